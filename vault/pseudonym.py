"""Human-friendly, typo-safe spelling of 50-bit pseudonyms.

Pseudonyms are read aloud over the phone, copied from badges and typed into
terminals by tired volunteers, so a typo must never silently name another person.
The 50 bits themselves come from a keyed PRF elsewhere; this module only spells
them and reads them back.

Format (exact)::

    PP-DDDD-DDDD-DDC        e.g. "DD-7KQ4-M2XP-9AW"

* ``PP``: a two-letter prefix (A-Z) chosen by the caller, naming the vault or the
  purpose, so a pseudonym pasted into the wrong place is refused instead of
  looked up. It is compared, not checksummed.
* ``D`` x 10: the 50-bit value, most significant 5 bits first, in Crockford
  base32 (``0-9 A-Z`` without I, L, O, U, so no symbol looks like another).
* ``C``: one check character from the same alphabet, appended to the last group.

The check is Damm's algorithm over the quasigroup ``x * y = 2x + y`` on GF(32)
(field polynomial x^5 + x^2 + 1). That quasigroup is totally anti-symmetric, so
the check detects every single-character substitution and every transposition
of two adjacent characters, including the check character itself, while staying
inside the 32-symbol alphabet: Crockford's own mod-37 check needs the symbols
``*~$=U``, which shells and spoken spelling mangle. Twin errors ("AA" -> "BB") and
jump transpositions are not guaranteed to be caught.

Reading is forgiving in Crockford's way: case, spaces and hyphens are ignored,
and I/L are read as 1 and O as 0.
"""

from __future__ import annotations

import re
import unicodedata

from .errors import VaultError

__all__ = ["ALPHABET", "BITS", "PseudonymError", "format", "parse", "purpose_prefix"]

#: Crockford base32 symbols, value = index.
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
#: Bits carried by one pseudonym.
BITS = 50

_DATA_CHARS = BITS // 5
_VALUE = {ch: i for i, ch in enumerate(ALPHABET)}
_READ_AS = str.maketrans({"I": "1", "L": "1", "O": "0"})
_SEPARATORS = re.compile(r"[\s\-\u2010-\u2015\u2212]+")  # incl. dashes word processors insert
_PREFIX = re.compile(r"[A-Z]{2}")
_POLY = 0b100101  # x^5 + x^2 + 1, irreducible over GF(2)


class PseudonymError(VaultError, ValueError):
    """A pseudonym (or its prefix) cannot be read.

    Messages say what is wrong but never repeat the text (at most the one offending
    character): what was pasted into a pseudonym box may be a name.
    """


def _gf32_mul(x: int, y: int) -> int:
    """Multiply in GF(2^5) modulo x^5 + x^2 + 1 (shift-and-add, reducing as we go)."""
    product = 0
    while y:
        if y & 1:
            product ^= x
        y >>= 1
        x <<= 1
        if x & 0b100000:
            x ^= _POLY
    return product


_TIMES_2 = tuple(_gf32_mul(2, x) for x in range(32))


def _op(x: int, y: int) -> int:
    """The quasigroup operation x * y = 2x + y in GF(32) (addition is XOR).

    Totally anti-symmetric because (c*x)*y = 4c + 2x + y, which equals
    (c*y)*x = 4c + 2y + x only if 3(x + y) = 0, i.e. x = y (3 is non-zero in GF(32)).
    """
    return _TIMES_2[x] ^ y


def _damm(values: list[int]) -> int:
    """Damm's interim digit after reading ``values``; 0 means the check holds."""
    interim = 0
    for v in values:
        interim = _op(interim, v)
    return interim


def _check_prefix(prefix: str) -> None:
    """Prefixes come from configuration; a bad one is a caller bug, reported loudly."""
    if not valid_prefix(prefix):
        raise PseudonymError("pseudonym prefix must be two uppercase ASCII letters (A-Z)")


def purpose_prefix(purpose: str) -> str:
    """The two letters printed in front of a purpose's pseudonyms (badge -> BA)."""
    return purpose[:2].upper()


def valid_prefix(prefix: str) -> bool:
    return isinstance(prefix, str) and _PREFIX.fullmatch(prefix) is not None


def format(value: int, prefix: str) -> str:
    """Spell a 50-bit ``value`` as ``PP-DDDD-DDDD-DDC`` (see the module docstring)."""
    _check_prefix(prefix)
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("pseudonym value must be an int")
    if not 0 <= value < 1 << BITS:
        raise PseudonymError(f"pseudonym value must be in [0, 2**{BITS})")
    digits = [(value >> (5 * (_DATA_CHARS - 1 - i))) & 31 for i in range(_DATA_CHARS)]
    check = _TIMES_2[_damm(digits)]  # the c with interim * c == 0
    body = "".join(ALPHABET[d] for d in digits) + ALPHABET[check]
    return f"{prefix}-{body[0:4]}-{body[4:8]}-{body[8:11]}"


def parse(text: str, prefix: str) -> int:
    """Read a pseudonym typed by a person and return its 50-bit value.

    Raises :class:`PseudonymError` naming what is wrong (length, prefix, a
    character outside the alphabet, or the check) so the person can retype it.
    """
    _check_prefix(prefix)
    compact = _SEPARATORS.sub("", unicodedata.normalize("NFKC", text)).upper()
    if len(compact) != 2 + _DATA_CHARS + 1:
        raise PseudonymError(
            f"pseudonym has the wrong length: expected {2 + _DATA_CHARS + 1} characters "
            f"without hyphens ({prefix}-XXXX-XXXX-XXX), got {len(compact)}"
        )
    if compact[:2] != prefix:
        raise PseudonymError(f"unknown prefix: expected a pseudonym starting with {prefix}-")
    values: list[int] = []
    for ch in compact[2:].translate(_READ_AS):
        if ch not in _VALUE:
            raise PseudonymError(f"pseudonym contains {ch!r}, which is not a pseudonym character")
        values.append(_VALUE[ch])
    if _damm(values) != 0:
        raise PseudonymError("mistyped pseudonym: check character does not match")
    result = 0
    for v in values[:_DATA_CHARS]:
        result = result << 5 | v
    return result
