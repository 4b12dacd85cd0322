"""Synthetic conference participants for the benchmarks (shared by every bench script).

The data is made up and not secret, so it comes from a seeded ``random.Random``
(reproducible runs), never from the OS CSPRNG. Every participant fills the same 12
fields, spread over all five classes of the default schema
(``vault/schemas/participant.toml``):

    public     badge_name
    logistics  arrival (date), dietary
    contact    email, phone
    identity   legal_name, passport_number, nationality, date_of_birth (date), organisation
    risk       risk_level (enum), risk_notes

Short free-text values average about 19 characters (nationality and dietary
are shorter, email and organisation longer); ``risk_notes`` is about 200 characters. A few names
carry non-ASCII letters, as real registration data does.
"""

from __future__ import annotations

import datetime as dt
import random

#: The 12 fields, in a fixed order (benchmarks use it for plaintext column order).
FIELDS: tuple[str, ...] = (
    "legal_name", "badge_name", "email", "phone", "passport_number", "nationality",
    "date_of_birth", "organisation", "dietary", "arrival", "risk_level", "risk_notes",
)
DATE_FIELDS: frozenset[str] = frozenset({"date_of_birth", "arrival"})
TEXT_FIELDS: tuple[str, ...] = tuple(f for f in FIELDS if f not in DATE_FIELDS)
RISK_LEVELS: tuple[str, ...] = ("low", "medium", "high", "critical")

_SYLLABLES = (
    "a", "ba", "da", "el", "fa", "ha", "ka", "la", "ma", "na", "ra", "sa", "ta", "ya", "za",
    "bi", "di", "ki", "li", "mi", "ni", "ri", "si", "ti", "vi", "ko", "lo", "mo", "no", "ro",
    "so", "to", "ku", "lu", "mu", "nu", "ru", "su", "an", "en", "in", "on", "ar", "or", "ir",
    "ché", "ño", "ša", "ić", "ön", "ây", "ğu", "ø", "ål", "ée",
)
_ASCII_SYLLABLES = tuple(s for s in _SYLLABLES if s.isascii())
_DOMAINS = ("example.org", "example.net", "mail.example", "ngo.example", "proton.example",
            "riseup.example", "posteo.example")
_NATIONALITIES = (
    "Belarusian", "Burmese", "Cambodian", "Colombian", "Congolese", "Egyptian", "Eritrean",
    "Ethiopian", "Guatemalan", "Honduran", "Iranian", "Iraqi", "Kyrgyz", "Mexican", "Nicaraguan",
    "Pakistani", "Palestinian", "Filipino", "Russian", "Rwandan", "Saudi", "Sri Lankan", "Sudanese",
    "Syrian", "Tajik", "Turkish", "Ugandan", "Uzbek", "Venezuelan", "Vietnamese", "Yemeni",
    "Zimbabwean", "Bosnian and Herzegovinian", "Central African", "Equatorial Guinean",
)
_ORG_A = ("Centre for", "Network for", "Committee on", "Association for", "Lawyers for",
          "Alliance for", "Observatory of", "Collective for")
_ORG_B = ("Press Freedom", "Land Rights", "Women's Rights", "Digital Rights", "Justice", "Memory",
          "Labour Rights", "Minority Rights", "Free Expression", "Prison Reform")
_DIETARY = ("none", "vegetarian", "vegan", "halal", "kosher", "gluten-free", "no nuts",
            "vegetarian, no nuts", "lactose intolerant", "pescatarian", "vegan, gluten-free",
            "diabetic, low sugar", "halal, no shellfish")
_WORDS = (
    "threats", "received", "after", "publication", "of", "report", "on", "local", "authorities",
    "surveillance", "suspected", "phone", "hacked", "family", "relocated", "avoid", "photos",
    "do", "not", "share", "travel", "details", "with", "partners", "contact", "only", "via",
    "secure", "channel", "detained", "briefly", "in", "colleague", "arrested", "court", "case",
    "pending", "visa", "denied", "once", "needs", "private", "room", "accompanied", "by",
    "lawyer", "home", "raided", "social", "media", "harassment", "campaign", "ongoing", "the",
    "and", "since", "march", "last", "year", "organisation", "office", "closed", "funding",
    "frozen", "border", "crossing", "interrogated", "airport", "watch", "list", "possible",
)
_DOB_START = dt.date(1950, 1, 1).toordinal()
_DOB_SPAN = dt.date(2005, 12, 31).toordinal() - _DOB_START
_ARRIVAL_START = dt.date(2026, 11, 20).toordinal()


def _word(rng: random.Random, lo: int, hi: int, pool: tuple[str, ...] = _SYLLABLES) -> str:
    return "".join(rng.choices(pool, k=rng.randint(lo, hi))).capitalize()


def _notes(rng: random.Random) -> str:
    target = rng.randint(180, 220)
    words: list[str] = []
    size = -1
    while size < target:
        w = rng.choice(_WORDS)
        words.append(w)
        size += len(w) + 1
    text = " ".join(words)[:target].rstrip()
    return text[0].upper() + text[1:] + "."


def participant(rng: random.Random) -> dict[str, object]:
    """One synthetic participant: all 12 fields filled."""
    given = _word(rng, 2, 4)
    family = _word(rng, 3, 5)
    middle = _word(rng, 1, 2)[0]
    mail_given = _word(rng, 2, 3, _ASCII_SYLLABLES).lower()
    mail_family = _word(rng, 2, 3, _ASCII_SYLLABLES).lower()
    return {
        "legal_name": f"{given} {middle}. {family}",
        "badge_name": f"{given} {family} ({rng.choice(('she/her', 'he/him', 'they'))})",
        "email": f"{mail_given}.{mail_family}{rng.randint(1, 99)}@{rng.choice(_DOMAINS)}",
        "phone": f"+{rng.randint(20, 998)} {rng.randint(100, 999)} {rng.randint(1000, 9999)} "
                 f"{rng.randint(1000, 9999)}",
        "passport_number": "".join(rng.choices("ABCDEFGHJKLMNPRSTUVWXYZ", k=2))
                           + f"{rng.randrange(10**8):08d} {rng.randrange(10**6):06d}",
        "nationality": rng.choice(_NATIONALITIES),
        "date_of_birth": dt.date.fromordinal(_DOB_START + rng.randrange(_DOB_SPAN)),
        "organisation": f"{rng.choice(_ORG_A)} {rng.choice(_ORG_B)}",
        "dietary": rng.choice(_DIETARY),
        "arrival": dt.date.fromordinal(_ARRIVAL_START + rng.randrange(10)),
        "risk_level": rng.choices(RISK_LEVELS, weights=(50, 30, 15, 5))[0],
        "risk_notes": _notes(rng),
    }


def participants(n: int, seed: int = 1) -> list[dict[str, object]]:
    """``n`` synthetic participants (dicts of the 12 FIELDS), reproducible from ``seed``."""
    rng = random.Random(seed)
    return [participant(rng) for _ in range(n)]


def mean_lengths(rows: list[dict[str, object]]) -> tuple[float, float]:
    """(mean characters of the short free-text values, mean characters of risk_notes).

    The enum ``risk_level`` ("low".."critical") is not counted as free text.
    """
    short = [len(r[f]) for r in rows for f in TEXT_FIELDS if f not in ("risk_notes", "risk_level")]  # type: ignore[arg-type]
    notes = [len(r["risk_notes"]) for r in rows]  # type: ignore[arg-type]
    return (sum(short) / max(len(short), 1), sum(notes) / max(len(notes), 1))


if __name__ == "__main__":  # a quick look at the data
    import sys

    sample = participants(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
    for p in sample:
        for k in FIELDS:
            print(f"{k:>16}: {p[k]}")
        print()
    s, nt = mean_lengths(sample)
    print(f"mean short text value: {s:.1f} chars, mean risk_notes: {nt:.1f} chars")


# -- helpers shared by the benchmark scripts ---------------------------------------------------
def timed(fn):  # type: ignore[no-untyped-def]
    """(seconds, result) of fn(); garbage left by the previous step is collected first."""
    import gc
    import time

    gc.collect()
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def file_size(path: str) -> int:
    """Main database file plus any WAL / journal / shared-memory file beside it."""
    import os

    total = 0
    for suffix in ("", "-wal", "-shm", "-journal"):
        try:
            total += os.path.getsize(path + suffix)
        except FileNotFoundError:
            pass
    return total


def check(ok: bool, what: str) -> None:
    """Benchmarks verify what they read back; a mismatch stops the run."""
    if not ok:
        raise SystemExit(f"CHECK FAILED: {what}")
