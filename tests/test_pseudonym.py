"""Pseudonym spelling: round trips, forgiving reading, and a check character that
catches every single substitution and adjacent transposition (tested exhaustively
on a sample, and proved for the underlying quasigroup by exhaustion)."""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vault import pseudonym
from vault.errors import VaultError
from vault.pseudonym import ALPHABET, BITS, PseudonymError, format, parse

SAMPLE = [random.Random(20260501 + i).getrandbits(BITS) for i in range(256)]
EDGE = [0, 1, 31, 32, (1 << BITS) - 1, (1 << BITS) - 2]
SHAPE = re.compile(r"[A-Z]{2}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{3}")


def _compact(p: str) -> str:
    return p.replace("-", "")


def _rejected(text: str, prefix: str = "DD") -> bool:
    try:
        parse(text, prefix)
    except PseudonymError:
        return True
    return False


# --- the quasigroup ---------------------------------------------------------------

def test_gf32_is_a_field() -> None:
    """x^5 + x^2 + 1 is irreducible iff every non-zero element has an inverse."""
    mul = pseudonym._gf32_mul
    for x in range(1, 32):
        assert sum(mul(x, y) == 1 for y in range(1, 32)) == 1
    assert all(mul(x, y) == mul(y, x) for x in range(32) for y in range(32))


def test_quasigroup_latin_square() -> None:
    """Each row and column a permutation: a changed character always changes the interim."""
    op = pseudonym._op
    for x in range(32):
        assert sorted(op(x, y) for y in range(32)) == list(range(32))
        assert sorted(op(y, x) for y in range(32)) == list(range(32))


def test_quasigroup_totally_anti_symmetric() -> None:
    """(c*x)*y == (c*y)*x implies x == y, for every interim c: adjacent swaps are caught."""
    op = pseudonym._op
    for c in range(32):
        for x in range(32):
            for y in range(32):
                if x != y:
                    assert op(op(c, x), y) != op(op(c, y), x), (c, x, y)


# --- format / parse -----------------------------------------------------------------

@given(value=st.integers(0, (1 << BITS) - 1),
       prefix=st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=2, max_size=2))
def test_round_trip(value: int, prefix: str) -> None:
    text = format(value, prefix)
    assert SHAPE.fullmatch(text)
    assert text.startswith(prefix + "-")
    assert parse(text, prefix) == value


@pytest.mark.parametrize("value", EDGE)
def test_round_trip_edges(value: int) -> None:
    assert parse(format(value, "DD"), "DD") == value


def test_known_spelling() -> None:
    """Pins the format: changing it would orphan every printed badge."""
    assert format(0, "DD") == "DD-0000-0000-000"
    assert format(1, "DD") == "DD-0000-0000-012"
    assert format((1 << BITS) - 1, "DD") == "DD-ZZZZ-ZZZZ-ZZ4"
    value = int("".join(f"{ALPHABET.index(c):05b}" for c in "7KQ4M2XP9A"), 2)
    assert format(value, "DD") == "DD-7KQ4-M2XP-9AW"
    assert parse("DD-7KQ4-M2XP-9AW", "DD") == value


def test_forgiving_reading() -> None:
    for value in SAMPLE[:64] + [1, 32, (1 << 5) + 1]:
        text = format(value, "DD")
        variants = [
            text.lower(),
            text.replace("-", ""),
            text.replace("-", " "),
            " " + text.replace("-", " - ") + "\n",
            text.replace("1", "I"), text.replace("1", "i"),
            text.replace("1", "L"), text.replace("1", "l"),
            text.replace("0", "O"), text.replace("0", "o"),
            text.replace("-", "\u2013"),
            text.lower().replace("0", "o").replace("1", "l").replace("-", ""),
        ]
        for variant in variants:
            assert parse(variant, "DD") == value, variant


def test_every_substitution_rejected() -> None:
    """Every position (prefix, data, check) x every other symbol, for 256 pseudonyms."""
    count = 0
    for value in SAMPLE + EDGE:
        chars = list(_compact(format(value, "DD")))
        for i, original in enumerate(chars):
            pool = "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if i < 2 else ALPHABET
            for symbol in pool:
                if symbol == original:
                    continue
                mutated = chars.copy()
                mutated[i] = symbol
                assert _rejected("".join(mutated)), (value, i, symbol)
                count += 1
    assert count >= 256 * 11 * 31


def test_every_adjacent_transposition_rejected() -> None:
    count = 0
    for value in SAMPLE + EDGE:
        chars = list(_compact(format(value, "DD")))
        for i in range(len(chars) - 1):
            if chars[i] == chars[i + 1]:
                continue
            mutated = chars.copy()
            mutated[i], mutated[i + 1] = mutated[i + 1], mutated[i]
            assert _rejected("".join(mutated)), (value, i)
            count += 1
    assert count >= 256 * 10


def test_printed_form_transposition_rejected() -> None:
    """Swaps in the hyphenated form people actually read, across group boundaries too."""
    for value in SAMPLE[:32]:
        text = format(value, "DD")
        positions = [i for i, ch in enumerate(text) if ch != "-"]
        for a, b in zip(positions, positions[1:]):
            if text[a] != text[b]:
                swapped = list(text)
                swapped[a], swapped[b] = swapped[b], swapped[a]
                assert _rejected("".join(swapped))


@pytest.mark.parametrize("text", [
    "", "DD", "DD-7KQ4-M2XP-9A", "DD-7KQ4-M2XP-9AZZ", "7KQ4-M2XP-9AZ", "DD-7KQ4-M2XP-9AZ-0",
])
def test_wrong_length(text: str) -> None:
    with pytest.raises(PseudonymError, match="wrong length"):
        parse(text, "DD")


def test_wrong_prefix() -> None:
    text = format(SAMPLE[0], "DD")
    with pytest.raises(PseudonymError, match="unknown prefix"):
        parse(text, "DE")
    with pytest.raises(PseudonymError, match="unknown prefix"):
        parse("XY" + text[2:], "DD")


def test_bad_character() -> None:
    text = format(SAMPLE[0], "DD")
    with pytest.raises(PseudonymError, match="not a pseudonym character"):
        parse(text[:-1] + "U", "DD")
    with pytest.raises(PseudonymError, match="not a pseudonym character"):
        parse(text[:-1] + "*", "DD")


def test_check_mismatch_message() -> None:
    text = format(0, "DD")
    with pytest.raises(PseudonymError, match="^mistyped pseudonym: check character does not match$"):
        parse(text[:-1] + "1", "DD")


@pytest.mark.parametrize("prefix", ["", "D", "DDD", "dd", "D1", "ÄB", "D-", "ＤＤ"])
def test_bad_prefix_rejected(prefix: str) -> None:
    with pytest.raises(PseudonymError, match="prefix"):
        format(0, prefix)
    with pytest.raises(PseudonymError, match="prefix"):
        parse("DD-0000-0000-000", prefix)


@pytest.mark.parametrize("value", [-1, 1 << BITS, 1 << 64])
def test_value_out_of_range(value: int) -> None:
    with pytest.raises(PseudonymError):
        format(value, "DD")


@pytest.mark.parametrize("value", [True, 1.0, "1"])
def test_value_not_int(value: object) -> None:
    with pytest.raises(TypeError):
        format(value, "DD")  # type: ignore[arg-type]


def test_error_is_value_error_and_vault_error() -> None:
    assert issubclass(PseudonymError, ValueError)
    assert issubclass(PseudonymError, VaultError)


def test_errors_do_not_echo_input() -> None:
    """What was pasted may be a name; it must not end up in a log via the message."""
    for text in ("Amira Haddad!!", "DD-AMIRA-HADDAD", "DD-7KQ4-M2XP-9AZ"):
        with pytest.raises(PseudonymError) as info:
            parse(text, "DD")
        assert "amira" not in str(info.value).lower()
        assert "7KQ4" not in str(info.value)


def test_schema_purposes_must_spell_a_prefix() -> None:
    """A purpose's first two letters prefix its pseudonyms: checked when the schema loads,
    not at the first pseudonym (an 'a1udit' purpose would otherwise fail every audited read)."""
    import vault
    base = '[schema]\nname="t"\nversion=1\nclasses=["a"]\npurposes=[{}]\n[fields.f]\nclass="a"\ntype="text"\n'
    for bad in ('"a1udit"', '"x"', '"badge", "bag"'):
        with pytest.raises(vault.SchemaError, match="two letters"):
            vault.load_schema(base.format(bad))
    assert list(vault.load_schema(base.format('"badge", "audit"')).purposes) == ["badge", "audit"]
