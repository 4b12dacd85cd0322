"""Normalisation before blind indexing: equal meanings must give equal bytes,
different scripts must never be merged or mangled, and every kind is idempotent."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from vault.normalize import KINDS, normalize, tokens
from vault.schema import NORMALIZERS


def test_kinds_match_schema() -> None:
    assert KINDS == NORMALIZERS


def test_unknown_kind_rejected() -> None:
    with pytest.raises(ValueError, match="unknown normalisation kind"):
        normalize("nmae", "Amira")


def test_none_is_identity() -> None:
    for value in ("  Müller\t", "Mu\u0308ller", "", "\u00a0"):
        assert normalize("none", value) == value


TEXT = [
    ("Hello  World", "hello world"),
    ("  Amira\u00a0\t\nHaddad \u3000", "amira haddad"),
    ("Ａｍｉｒａ", "amira"),  # full-width
    ("ﬁeld", "field"),  # ligature
    ("Straße", "strasse"),
    ("STRASSE", "strasse"),
    ("Müller", "müller"),  # text keeps accents
    ("Mu\u0308ller", "müller"),
    ("İstanbul", "i\u0307stanbul"),  # casefold adds a combining dot; text keeps it
    ("أميرة الحداد", "أميرة الحداد"),  # Arabic: no case, unchanged
    ("Наталья ЭСТЕМИРОВА", "наталья эстемирова"),
    ("Семён Йошкин", "семён йошкин"),
    ("Nguyễn Thị Minh Khai", "nguyễn thị minh khai"),
    ("प्रिया शर्मा", "प्रिया शर्मा"),
    ("", ""),
    (" \t\n", ""),
]


@pytest.mark.parametrize(("value", "expected"), TEXT)
def test_text(value: str, expected: str) -> None:
    assert normalize("text", value) == expected


NAME = [
    # Latin accents fold
    ("Müller", "muller"),
    ("MÜLLER", "muller"),
    ("Mu\u0308ller", "muller"),
    ("  muller ", "muller"),
    ("Mül\u00adler", "muller"),  # soft hyphen removed
    ("Strauß", "strauss"),
    ("İSTANBUL", "istanbul"),
    ("François Ñúñez", "francois nunez"),
    ("Nguyễn Thị Minh Khai", "nguyen thi minh khai"),  # Vietnamese is Latin: folded
    ("Đặng Văn Lâm", "đang van lam"),  # đ is a letter, not an accent: kept
    ("Łukasz Øvergård", "łukasz øvergard"),
    ("Ｍüｌｌｅｒ", "muller"),
    # dashes and apostrophes
    ("Amira Al-Haddad", "amira al-haddad"),
    ("Amira Al\u2010Haddad", "amira al-haddad"),
    ("Amira Al\u2011Haddad", "amira al-haddad"),
    ("Amira Al\u2013Haddad", "amira al-haddad"),
    ("Amira Al\u2014Haddad", "amira al-haddad"),
    ("Amira Al\u2212Haddad", "amira al-haddad"),
    ("O’Brien", "o'brien"),
    ("O‘Brien", "o'brien"),
    ("Oʼbrien", "o'brien"),
    ("O`Brien", "o'brien"),
    ("O'Brien", "o'brien"),
    # Greek and Cyrillic fold their accents too, but are never transliterated
    ("Ελένη Παπαδοπούλου", "ελενη παπαδοπουλου"),
    ("Наталья ЭСТЕМИРОВА", "наталья эстемирова"),
    ("Семён", "семен"),
    # Arabic (RTL): marks kept, nothing else changes
    ("أميرة الحداد", "أميرة الحداد"),
    ("أَميرة الحدّاد", "أَميرة الحدّاد"),
    ("  أميرة\u00a0 الحداد ", "أميرة الحداد"),
    # Devanagari: virama (U+094D) and nukta (U+093C) are combining marks that must stay
    ("प्रिया शर्मा", "प्रिया शर्मा"),
    ("क़िला", "\u0915\u093c\u093f\u0932\u093e"),
    # Thai tone marks stay
    ("สมชาย ส่งเสริม", "สมชาย ส่งเสริม"),
    ("", ""),
]


@pytest.mark.parametrize(("value", "expected"), NAME)
def test_name(value: str, expected: str) -> None:
    assert normalize("name", value) == expected


def test_name_non_latin_marks_survive() -> None:
    """The reason for the script check: a naive accent fold would drop these."""
    for value in ("प्रिया", "क़िला", "ส่ง", "أَميرة"):
        marks = [c for c in unicodedata.normalize("NFD", value) if unicodedata.combining(c)]
        assert marks
        out = unicodedata.normalize("NFD", normalize("name", value))
        assert [c for c in out if unicodedata.combining(c)] == marks


def test_muller_variants_all_equal() -> None:
    variants = ["Müller", "MÜLLER", "Mu\u0308ller", "MU\u0308LLER", "  muller ", "Muller",
                "mül\u00adler", "Ｍüｌｌｅｒ", "müller\u00a0"]
    assert {normalize("name", v) for v in variants} == {"muller"}


EMAIL = [
    (" Amira.Haddad+DD@Example.ORG ", "amira.haddad+dd@example.org"),
    ("AMIRA@EXAMPLE.ORG", "amira@example.org"),
    ("ａｍｉｒａ＠ｅｘａｍｐｌｅ．ｏｒｇ", "amira@example.org"),
    ("\tamira@example.org\n", "amira@example.org"),
]


@pytest.mark.parametrize(("value", "expected"), EMAIL)
def test_email(value: str, expected: str) -> None:
    assert normalize("email", value) == expected


def test_email_keeps_dots_and_tags() -> None:
    """Dot and +tag stripping is one provider's rule; elsewhere they are different mailboxes."""
    assert normalize("email", "a.haddad@example.org") != normalize("email", "ahaddad@example.org")
    assert normalize("email", "amira+dd@example.org") != normalize("email", "amira@example.org")


PHONE = [
    ("+44 20 7946 0000", "+442079460000"),
    ("+44 (0)20 7946 0000", "+442079460000"),
    ("+44(0)2079460000", "+442079460000"),
    ("+49 (0) 30 1234567", "+49301234567"),
    ("(+44) (0)20 7946 0000", "+442079460000"),
    ("0044 20 7946 0000", "+442079460000"),
    ("0044 (0)20 7946 0000", "+442079460000"),
    ("+1 (555) 123-4567", "+15551234567"),
    ("+1.555.123.4567", "+15551234567"),
    ("Tel: +44 20 7946 0000", "+442079460000"),
    ("(020) 7946-0000", "02079460000"),
    ("(0)20 7946 0000", "02079460000"),  # no country code: "(0)" is a digit
    ("+44 20 (0)7946", "+442007946"),  # not after the country code: a digit
    ("＋４４ ２０ ７９４６ ００００", "+442079460000"),  # full-width
    ("+٩٦٦ ٥٠ ١٢٣ ٤٥٦٧", "+966501234567"),  # Arabic-Indic digits
    ("٠٠٩٦٦ ٥٠ ١٢٣ ٤٥٦٧", "+966501234567"),  # Arabic-Indic "00" prefix
    ("+۹۸ ۹۱۲ ۳۴۵ ۶۷۸۹", "+989123456789"),  # Extended Arabic-Indic (Persian) digits
    ("+९१ ९८७६५ ४३२१०", "+919876543210"),  # Devanagari digits
    ("+44 20 7946 0000\u200f", "+442079460000"),  # trailing RLM from an RTL paste
    ("", ""),
    ("+", ""),
    ("n/a", ""),
]


@pytest.mark.parametrize(("value", "expected"), PHONE)
def test_phone(value: str, expected: str) -> None:
    assert normalize("phone", value) == expected


COMPACT = [
    ("p 835-260.08", "P83526008"),
    ("P83526008", "P83526008"),
    ("p\u00a0835\u2013260.08", "P83526008"),
    ("ｐ８３５－２６０．０８", "P83526008"),
    ("ab\t12\n34", "AB1234"),
    ("straße-12", "STRASSE12"),
]


@pytest.mark.parametrize(("value", "expected"), COMPACT)
def test_compact(value: str, expected: str) -> None:
    assert normalize("compact", value) == expected


def test_tokens() -> None:
    assert tokens(normalize("name", "Amira Al-Haddad")) == ["amira", "al", "haddad"]
    assert tokens(normalize("name", "Amira y Haddad-Haddad J. K")) == ["amira", "haddad"]
    assert tokens(normalize("name", "أميرة الحداد")) == ["أميرة", "الحداد"]
    assert tokens(normalize("name", "  -- ")) == []
    assert tokens("") == []


# --- properties --------------------------------------------------------------------

ANY_TEXT = st.text(alphabet=st.characters(exclude_categories=()))  # includes lone surrogates
MIXED = st.text(alphabet=st.sampled_from(
    "aAüÜ\u0308\u0301\u00ad\u00a0 \t-\u2010’`ßİıﬁＡ０٣۵९+()0.@" "प्ि\u093c" "أ\u064e" "йё" "ᾳ\u0345ΐ"
))


@pytest.mark.parametrize("kind", KINDS)
@given(value=st.one_of(ANY_TEXT, MIXED, st.text()))
def test_idempotent(kind: str, value: str) -> None:
    once = normalize(kind, value)
    assert normalize(kind, once) == once


def test_idempotent_sweep() -> None:
    """Every code point that decomposes, changes case, combines, is whitespace or is a
    digit, in contexts that invite recomposition: hypothesis rarely draws the pairs
    (a letter, a separator, a stray mark) that break idempotence."""
    interesting = [
        ch for ch in map(chr, range(0x110000))
        if unicodedata.decomposition(ch) or ch.casefold() != ch or ch.upper() != ch
        or unicodedata.combining(ch) or ch.isspace() or unicodedata.decimal(ch, None) is not None
    ]
    for ch in interesting:
        for value in ("A" + ch + "\u0308", " " + ch + "\u0301", "+44" + ch + "(0)1"):
            for kind in KINDS:
                once = normalize(kind, value)
                assert normalize(kind, once) == once, (kind, value)


@given(value=ANY_TEXT)
@example(value="\ud800a\u0308\udfff")  # lone surrogates, which st.text() rarely draws
def test_no_exceptions(value: str) -> None:
    for kind in KINDS:
        assert isinstance(normalize(kind, value), str)
    assert isinstance(tokens(normalize("name", value)), list)


LATIN1_LETTERS = "".join(chr(c) for c in range(0x100) if chr(c).isalpha())


@given(value=st.text(alphabet=st.sampled_from(LATIN1_LETTERS + " ")),
       transform=st.sampled_from([
           lambda s: unicodedata.normalize("NFC", s),
           lambda s: unicodedata.normalize("NFD", s),
           str.upper, str.lower,
           lambda s: unicodedata.normalize("NFD", s.upper()),
           lambda s: unicodedata.normalize("NFD", s).lower(),
       ]))
def test_name_invariant_under_case_and_composition(value: str, transform: Callable[[str], str]) -> None:
    assert normalize("name", transform(value)) == normalize("name", value)


@given(value=st.text())
def test_tokens_shape(value: str) -> None:
    parts = tokens(normalize("name", value))
    assert len(parts) == len(set(parts))
    for part in parts:
        assert part and " " not in part and "-" not in part and len(part.rstrip(".")) > 1


@given(value=st.one_of(ANY_TEXT, st.text(alphabet=" -.ab\t\u00a0\u2010")))
@example(value="a - b--cd .. e.f -- ef")
def test_tokens_are_the_parts_between_runs_of_spaces_and_hyphens(value: str) -> None:
    """tokens() splits with string operations: the same parts, in the same order, as the
    regular expression that defines them (any text, normalised or not)."""
    want = list(dict.fromkeys(p for p in re.split(r"[ \-]+", value) if len(p.rstrip(".")) > 1))
    assert tokens(value) == want


_FAST_KINDS = {"text": "_text", "name": "_name", "email": "_email", "phone": "_phone", "compact": "_compact"}
_TRICKY = st.sampled_from(list("aAbZ -'`.()+0123456789T\t") + [
    "\u0301", "\u0308", "\u034f", "\u0327", "é", "Ö", "ø", "ł", "ß", "İ", "ﬁ", "\u2013", "\u00ad", "\u00a0",
    "ё", "Ω", "ά", "क", "्", "\u0e48", "٣", "１", "\u3000", "ǅ", "\u0345", "ﾞ", "Ø", "ĳ", "ǰ"])


@given(st.one_of(st.text(), st.lists(_TRICKY, max_size=24).map("".join)))
@example("Ana Øvergård-Łukasz")
@example("1\u0301 a\u0301\u0302 \u034f\u0301")
@example("+44 (0)20 7946 0018")
@example("a\u034f\u0301")  # U+034F after a letter: combining class 0, so the next mark stays
@example("\u00a0")  # non-ASCII that folds to ASCII: the whitespace collapse of that branch
@example("\uff21\tb")
def test_fast_paths_equal_the_general_path(value: str) -> None:
    """The fast paths are an optimisation of a format: they must give the general path's
    bytes for every input, or a stored index would stop matching."""
    import vault.normalize as N
    for kind, fn in _FAST_KINDS.items():
        assert getattr(N, fn)(value) == getattr(N, fn)(value, _fast=False), (kind, value)
