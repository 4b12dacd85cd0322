"""Canonical forms of field values, computed before a blind index is taken.

A blind index is a keyed hash of a value, so it only finds a record when the
query hashes to the same bytes as the stored value. Field-workers type names,
numbers and addresses on every kind of keyboard, copy them out of PDFs and
messengers and dictate them over bad lines; this module makes the equal-meaning
spellings of one value byte-equal, and nothing more. It never transliterates
between scripts (that would guess, and merge different people), and every kind is
idempotent, so normalising a stored value again never changes its index.

The output of a kind is part of the on-disk format: changing it orphans existing
blind indexes, so treat an edit here like a format change. Each kind has fast paths
for the common inputs (ASCII, accented Latin names); ``_fast=False`` runs the general
path alone, and a property test checks that both give the same bytes for any text.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

__all__ = ["KINDS", "normalize", "normalizer", "tokens"]

#: The normalisation kinds a schema field may name (mirrors ``vault.schema.NORMALIZERS``).
KINDS: tuple[str, ...] = ("none", "text", "name", "email", "phone", "compact")

# Dashes and apostrophes people (and word processors) type inside names. Fold to ASCII
# so "Al-Haddad" and "O'Brien" typed on a phone and pasted from a PDF match.
_NAME_PUNCT = str.maketrans({c: "-" for c in "\u2010\u2011\u2012\u2013\u2014\u2015\u2212"}
                            | {"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'",
                               "\u00ad": None})  # soft hyphen: an invisible line-break hint

# Scripts whose combining marks are accents on a letter that people routinely omit
# or cannot type ("Muller" for "Müller", "Elena" for "Ελένη", "Семен" for "Семён").
_FOLDED_SCRIPTS = ("LATIN ", "GREEK ", "CYRILLIC ")

# Separators inside identifiers such as passport numbers.
_COMPACT_DROP = re.compile(r"[\s\-\u2010-\u2015\u2212.\u00ad]+")


def normalize(kind: str, value: str) -> str:
    """Return the canonical form of ``value`` under ``kind`` (one of :data:`KINDS`).

    Raises ValueError for an unknown kind rather than falling back to "none": a
    silently unnormalised index would just never match, which looks like "not
    registered" to someone searching for a person.
    """
    return normalizer(kind)(value)


def normalizer(kind: str) -> Callable[[str], str]:
    """The function :func:`normalize` applies for ``kind`` (looked up once, for hot loops)."""
    fn = _KINDS_FN.get(kind)
    if fn is None:
        raise ValueError(f"unknown normalisation kind {kind!r} (expected one of {', '.join(KINDS)})")
    return fn


def tokens(value: str) -> list[str]:
    """Split a "name"-normalised value into the parts a search may match on.

    People are searched for by any of their names ("Haddad", "Amira"), so each part
    gets its own index entry. One-character parts (initials, also when written
    "j.", and the "y" in Spanish names) are dropped: their index entries would each
    be shared by a large part of the population, matching everyone and leaking
    frequency. Note this also drops single-ideograph parts of CJK names; index the
    full name for those. Duplicates are dropped, preserving order, so a repeated
    part is not counted twice.
    """
    seen: dict[str, None] = {}
    # the parts between runs of spaces and hyphens: splitting at every single one gives the
    # same non-empty parts as re.split(r"[ \-]+"), plus empty ones, dropped below with the
    # one-character parts; string methods take half the regex's time (every record's name)
    for part in value.replace("-", " ").split(" "):
        if len(part.rstrip(".")) > 1:
            seen.setdefault(part, None)
    return list(seen)


def _fold_case(value: str) -> str:
    """NFKC, case-fold, NFKC again: case-folding can produce unnormalised text
    (e.g. "İ" folds to "i" + combining dot), so the second NFKC restores a
    canonical form and makes the result idempotent."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", value).casefold())


def _collapse_space(value: str) -> str:
    """Whitespace (NBSP, tabs, newlines, ideographic space...) is never part of a
    name's identity, only of how it was typed or pasted."""
    return " ".join(value.split())


def _text(value: str, _fast: bool = True) -> str:
    if _fast and value.isascii():  # NFKC is the identity on ASCII and casefold() is lower()
        return " ".join(value.lower().split())
    return _collapse_space(_fold_case(value))


def _name(value: str, _fast: bool = True) -> str:
    """Text normalisation plus dash/apostrophe unification and accent folding.

    Accents are dropped only from Latin, Greek and Cyrillic letters, where they are
    diacritics people routinely omit. In other scripts combining marks are part of
    the spelling: Devanagari viramas and nuktas, Thai tone marks and Arabic hamza
    are combining characters too, and dropping them would turn a name into a
    different (or unreadable) one and merge unrelated people.

    Two fast paths give exactly :func:`_name_general`'s output (a property test checks
    it): ASCII input, and input whose decomposition is ASCII plus the combining
    diacritics block, the common accented Latin name.
    """
    if not _fast:
        return _name_general(value)
    if value.isascii():  # NFKC is the identity on ASCII, casefold() is lower()
        return " ".join(value.lower().translate(_NAME_PUNCT).split())
    folded = _fold_case(value).translate(_NAME_PUNCT)
    if folded.isascii():  # no combining marks: NFKD and NFC are the identity
        return _collapse_space(folded)
    decomposed = unicodedata.normalize("NFKD", folded)
    if _FAST_NAME.fullmatch(decomposed):
        # ASCII letters are all LATIN: marks after one go; marks after anything else stay
        return _collapse_space(unicodedata.normalize("NFC", _LATIN_MARKS.sub("", decomposed)))
    return _name_general(value)


# The fast path's alphabet: ASCII, the Latin letters of U+00C0-U+024F that have no
# decomposition (o-slash, l-stroke, ...), and U+0300-U+036F except U+034F (COMBINING
# GRAPHEME JOINER, combining class 0). Every letter in it is LATIN, so a mark after one goes.
_MARKS = "\u0300-\u034e\u0350-\u036f"
_LATIN_BEYOND_ASCII = "".join(
    chr(c) for c in range(0xC0, 0x250)
    if unicodedata.name(chr(c), "").startswith("LATIN ") and not unicodedata.combining(chr(c)))
_LATIN = "A-Za-z" + _LATIN_BEYOND_ASCII
_FAST_NAME = re.compile(f"[\\x00-\\x7f{_LATIN_BEYOND_ASCII}{_MARKS}]*")
_LATIN_MARKS = re.compile(f"(?<=[{_LATIN}])[{_MARKS}]+")


def _name_general(value: str) -> str:
    """:func:`_name` for any input: drop each combining mark whose base letter is Latin,
    Greek or Cyrillic."""
    folded = _fold_case(value).translate(_NAME_PUNCT)
    out: list[str] = []
    base = ""
    for ch in unicodedata.normalize("NFKD", folded):
        if unicodedata.combining(ch):
            if base.startswith(_FOLDED_SCRIPTS):
                continue
        else:
            base = unicodedata.name(ch, "")
        out.append(ch)
    return _collapse_space(unicodedata.normalize("NFC", "".join(out)))


def _email(value: str, _fast: bool = True) -> str:
    """Whole-address lower-casing; no provider-specific rewriting.

    Local parts are treated as case-insensitive, as virtually every provider does;
    a registration form is no place to insist on RFC 5321's letter. Dots and
    "+tags" are kept: ignoring them is Gmail's rule, not the internet's, and
    applying it elsewhere would merge two different people's addresses.
    """
    if _fast and value.isascii():  # NFKC is the identity on ASCII
        return value.strip().lower()
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", value).strip().lower())


# After reduction to digits, "T" marks a literal "(0)" trunk prefix.
_DIGIT_OR_PLUS = re.compile(r"[\d+]")
# On ASCII text, str.translate does what the general path's three re.sub calls do.
_ASCII_DIGITS_PARENS = {c: None for c in range(128) if chr(c) not in "0123456789()"}
_NO_PARENS = {ord("("): None, ord(")"): None}
_TRUNK_AFTER_CC = re.compile(r"^(\d{1,3})T")


def _phone(value: str, _fast: bool = True) -> str:
    """Digits only, with "+" for international numbers ("+441234567890").

    A number is international if a "+" comes before its first digit or its digits
    start with the "00" international prefix (replaced by "+"). The "(0)" that
    British and German writing puts after the country code ("+44 (0)20 ...") is a
    trunk prefix that is not dialled internationally, so it is dropped there and
    kept as a digit anywhere else. Any Unicode decimal digit counts (NFKC does not
    map Arabic-Indic or Devanagari digits to ASCII). A value with no digits
    normalises to "" rather than to a lone "+" every such junk value would share.
    """
    if _fast and value.isascii():  # fast path: NFKC and the digit mapping are the identity on ASCII
        text = value
        kept = value.translate(_ASCII_DIGITS_PARENS).replace("(0)", "T").translate(_NO_PARENS)
    else:
        text = "".join(
            str(d) if (d := unicodedata.decimal(ch, None)) is not None else ch
            for ch in unicodedata.normalize("NFKC", value)
        )
        kept = re.sub(r"[^\dT]", "", re.sub(r"\(0\)", "T", re.sub(r"[^\d()]", "", text)))
    first = _DIGIT_OR_PLUS.search(text)
    plus = first is not None and first.group() == "+"
    if not plus:
        zeros = kept.replace("T", "0")
        if zeros.startswith("00"):
            plus = True
            kept = kept[2:] if kept.startswith("00") else zeros[2:]
    if plus and (m := _TRUNK_AFTER_CC.match(kept)):  # drop the "T" (a match, not a 1 us re.sub)
        kept = m.group(1) + kept[m.end():]
    digits = kept.replace("T", "0")
    if not digits:
        return ""
    return ("+" if plus else "") + digits


def _compact(value: str, _fast: bool = True) -> str:
    """Upper-case identifier with its separators removed ("P83526008").

    Document numbers are printed, read out and retyped with arbitrary grouping;
    the grouping is never significant. Casefold-then-upper maps every case variant
    (including "ß" -> "SS") to one spelling. The last NFKC is there because removing
    a separator can bring a letter and a stray combining mark together.
    """
    if _fast and value.isascii():  # NFKC is the identity on ASCII; lower-then-upper is upper()
        return _COMPACT_DROP.sub("", value.upper())
    folded = unicodedata.normalize("NFKC", _fold_case(value).upper())
    return unicodedata.normalize("NFKC", _COMPACT_DROP.sub("", folded))


_KINDS_FN: dict[str, Callable[[str], str]] = {
    "none": lambda value: value, "text": _text, "name": _name, "email": _email, "phone": _phone,
    "compact": _compact}
