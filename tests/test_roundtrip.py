"""Every field type round-trips arbitrary values, on every backend."""

from __future__ import annotations

import datetime as dt
import unicodedata

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vault
from conftest import PASSPHRASE

# Any Unicode scalar value that UTF-8 can encode (no lone surrogates) except the control
# characters a vault refuses (vault.values): RTL scripts, combining marks, emoji, empty
# strings. Text reads back in NFC.
text = st.text(alphabet=st.characters(exclude_categories=("Cs", "Cc")), max_size=300)
hard = st.sampled_from([
    "", " ", "أميرة حداد", "עמירה חדאד", "Mu\u0308ller", "Zoë\u0301\u0327", "👩🏽‍⚖️✊🏿",
    "‮override‬", "x" * 1000,  # a single-line field's longest value
])
texts = st.one_of(text, hard)
# A notes field (multiline, max_length 10,000): line breaks, tabs and a 10,000-character note.
notes = st.one_of(texts, st.text(alphabet=st.characters(exclude_categories=("Cs", "Cc")) | st.sampled_from("\t\n"),
                                 max_size=300),
                  st.sampled_from(["\t\n", "x" * 10_000, "نص " * 3333]))
dates = st.dates(min_value=dt.date(1, 1, 1), max_value=dt.date(9999, 12, 31))
levels = st.sampled_from(["low", "medium", "high", "critical"])

records = st.fixed_dictionaries({"badge_name": texts.filter(str.strip)}, optional={  # every record names someone
    "legal_name": texts, "risk_notes": notes, "email": texts, "phone": texts,
    "messenger_handle": texts, "date_of_birth": dates, "arrival": dates, "photo_consent": st.booleans(),
    "risk_level": levels, "organisation": texts,
})


def nfc(rec: dict) -> dict:
    return {k: unicodedata.normalize("NFC", x) if isinstance(x, str) else x for k, x in rec.items()}


def test_roundtrip_participant_fields(url: str) -> None:
    with vault.create(url, PASSPHRASE) as v:

        @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(rec=records, change=records)
        def check(rec: dict, change: dict) -> None:
            rid = v.add(rec)
            assert dict(v.get(rid)) == nfc(rec)
            for name, value in nfc(rec).items():
                assert v.get(rid, fields=[name])[name] == value
            v.update(rid, change)
            assert dict(v.get(rid)) == nfc({**rec, **change})

        check()


def test_roundtrip_integer_and_custom_types(tmp_path) -> None:  # type: ignore[no-untyped-def]
    schema = """
[schema]
name = "t"
version = 1
classes = ["a", "b"]
[fields.n]
type = "integer"
class = "a"
[fields.flag]
type = "bool"
class = "b"
[fields.kind]
type = "enum"
class = "b"
values = ["x", "ÿ", "日本"]
[fields.when]
type = "date"
class = "a"
[fields.note]
type = "text"
class = "b"
"""
    with vault.create(tmp_path / "t.vault", PASSPHRASE, schema=schema) as v:

        @settings(max_examples=80, deadline=None)
        @given(rec=st.fixed_dictionaries({}, optional={
            "n": st.integers(min_value=-(2**63), max_value=2**63 - 1), "flag": st.booleans(),
            "kind": st.sampled_from(["x", "ÿ", "日本"]), "when": dates, "note": texts}))
        def check(rec: dict) -> None:
            rid = v.add(rec)
            assert dict(v.get(rid)) == nfc(rec)
            assert [r for r in v.records() if r.id == rid][0] == nfc(rec)

        check()


def test_many_records_stream_back(url: str) -> None:
    rows = [{"badge_name": f"Badge {i}", "risk_level": "low", "arrival": dt.date(2026, 11, 1 + i % 9)}
            for i in range(1200)]
    with vault.create(url, PASSPHRASE) as v:
        ids = v.add_many(rows)
        got = {r.id: dict(r) for r in v.records()}
        assert got == dict(zip(ids, rows))
        only = list(v.records(fields=["badge_name"]))
        assert all(set(r) == {"badge_name"} for r in only) and len(only) == 1200
