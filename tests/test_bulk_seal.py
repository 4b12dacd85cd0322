"""The bulk insert's batch path (Records.row_sealer, Records.row_encoder, Codec.batch_sealer)
gives what the general path gives: the same bytes for the same randomness, the same
validation errors, and rows every reader opens."""

from __future__ import annotations

import datetime as dt
import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vault
from conftest import PASSPHRASE
from vault import _crypto as C
from vault import _format as F

ValidationError = vault.ValidationError

TEXT_FIELDS = ["legal_name", "badge_name", "email", "phone", "organisation", "nationality", "passport_number",
               "risk_notes", "accessibility", "source_id", "pronouns"]
ANY_VALUE = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=1100),  # printable ASCII, long
    st.text(alphabet=st.sampled_from("ab \t\n\r\x00é\u2028"), max_size=20),  # controls, non-ASCII
    st.none(), st.integers(), st.booleans(), st.lists(st.text(max_size=8), max_size=3),
    st.dates().map(dt.date.isoformat), st.sampled_from(["low", "high", "nope", "2026-02-30"]),
    st.dates(), st.datetimes(),  # a date object; a datetime, which a date field refuses
    st.text(alphabet=st.sampled_from("ae\u0301\u00e9\u00a0\u2028\u200b \t\n-"), max_size=12),  # NFD, NFC, spaces
    st.sampled_from(["\ud800", "a\udfffb", " vegan ", "  ", "x" * 1001, "é" * 1001, "é" * 999 + "\n"]),
    st.lists(st.sampled_from(["vegan", " halal", "vegan", "", "é"]), max_size=3),
)
ROWS = st.dictionaries(st.sampled_from(TEXT_FIELDS + ["dietary", "arrival", "risk_level", "photo_consent",
                                                      "date_of_birth", "no_such_field"]), ANY_VALUE, max_size=10)


@pytest.fixture
def v(tmp_path: Path) -> Iterator[vault.Vault]:
    with vault.create(f"sqlite:///{tmp_path / 'v.db'}", PASSPHRASE) as h:
        yield h


def _outcome(fn: Callable[[], Any]) -> Any:
    try:
        return "ok", fn()
    except ValidationError as e:
        return "error", str(e), e.field


def _seeded(monkeypatch: pytest.MonkeyPatch, seed: bytes) -> None:
    """C.random_bytes from a fixed stream, so two paths draw the same randomness."""
    counter = itertools.count()
    monkeypatch.setattr(C, "random_bytes",
                        lambda n: b"".join(C.hmac_sha256(seed, next(counter).to_bytes(8, "big"))
                                           for _ in range(-(-n // 32)))[:n])


def test_row_encoder_matches_encode(v: vault.Vault) -> None:
    recs = v._records
    encode = recs.row_encoder()

    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(row=ROWS)
    def check(row: dict[str, Any]) -> None:
        assert _outcome(lambda: encode(row, "row 3: ")) == _outcome(lambda: recs.encode(row, "row 3: "))
    check()


@pytest.mark.parametrize("where", ["", "row 9: "])
def test_row_encoder_errors_name_the_row_and_field(v: vault.Vault, where: str) -> None:
    encode = v._records.row_encoder()
    for bad in [{"legal_name": "A", "no_such_field": 1}, {"legal_name": "A", "email": 5}, {"email": "x"},
                {"legal_name": "A\x00B"}, {"legal_name": "A" * 1001}, ["not", "a", "mapping"]]:
        with pytest.raises(ValidationError) as got:
            encode(bad, where)  # type: ignore[arg-type]
        with pytest.raises(ValidationError) as want:
            v._records.encode(bad, where)  # type: ignore[arg-type]
        assert (str(got.value), got.value.field) == (str(want.value), want.value.field)


def test_batch_sealer_matches_seal(v: vault.Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same record id, randomness and values: the batch path writes the same bytes (and DEK
    ids) as encode + seal, and the row opens to the values."""
    recs = v._records
    fast, slow = recs.row_sealer(), recs.row_sealer(batch=False)
    assert fast.__name__ == "one" and slow.__name__ == "slow"  # the batch path is what is compared

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(row=ROWS, seed=st.binary(min_size=32, max_size=32))
    def check(row: dict[str, Any], seed: bytes) -> None:
        _seeded(monkeypatch, seed)
        a = _outcome(lambda: fast(row, ""))
        _seeded(monkeypatch, seed)
        b = _outcome(lambda: slow(row, ""))
        assert a == b
        if a[0] == "ok":
            rid, data, _ids = a[1]
            opened = recs.open_row(rid, data, recs.classes_for(None), recs.decoders)
            assert set(opened) == {k for k, x in row.items() if x is not None}
    check()


def test_batch_sealer_every_field_and_empty_classes(v: vault.Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    recs = v._records
    full = {f.name: ("low" if f.type == "enum" else "2026-01-02" if f.type == "date" else True if f.type == "bool"
                     else 7 if f.type == "integer" else ["vegan"] if f.type == "list" else f"{f.name} value é")
            for f in v._records.ses.schema.fields.values()}
    if "dietary" in full:
        full["dietary"] = ["vegan"]
    for row in [full, {"legal_name": "Amira", "email": "a@example.org"}, {"legal_name": "x" * 3000}]:
        _seeded(monkeypatch, b"s" * 32)
        a = _outcome(lambda: recs.row_sealer()(row, ""))
        _seeded(monkeypatch, b"s" * 32)
        assert a == _outcome(lambda: recs.row_sealer(batch=False)(row, ""))


def test_batch_sealer_randomness_length_is_checked(v: vault.Vault) -> None:
    a = v._records.access
    classes = v._records.ses.schema.classes
    seal = a.codec.batch_sealer([(c, a.current[c].key.kid, a.current[c].key.version, a.current[c].aead)
                                 for c in classes])
    assert seal is not None
    with pytest.raises(ValueError, match="randomness"):
        seal(os.urandom(16), {}, b"\x00" * 39)


def test_add_many_batch_rows_read_back(v: vault.Vault) -> None:
    rows = [{"legal_name": f"Amira Haddad {i}", "email": f"a{i}@example.org", "risk_notes": "line\nnext é" * i,
             "dietary": ["vegan"], "arrival": "2026-11-08", "risk_level": "high"} for i in range(30)]
    ids = v.add_many(rows)
    for rid, row in zip(ids, rows, strict=True):
        got = dict(v.get(rid))
        assert {k: (x.isoformat() if isinstance(x, dt.date) else x) for k, x in got.items()} == row
    assert [r.id for r in v.find(email="a7@example.org")] == [ids[7]]


@given(key=st.binary(min_size=32, max_size=32), vid=st.binary(min_size=16, max_size=16),
       rid=st.binary(min_size=16, max_size=16), ids=st.binary(max_size=80))
def test_batch_states_are_state_of(key: bytes, vid: bytes, rid: bytes, ids: bytes) -> None:
    """add_many's per-batch state function (HMAC keyed once) names rows as state_of does."""
    from vault.audit import state_of, states
    assert states(key, vid)(rid, ids) == state_of(key, vid, rid, ids)


TRICKY = [None, "", " ", "abc", "é", "e\u0301", "a\tb", "a\nb", "a\rb", "\x00", "\x85", "a\u00a0b", "\u2028", "\ud800",
          "x" * 1001, "é" * 1001, "low", "high", "2026-02-30", "2026-01-02", dt.date(2026, 1, 2),
          dt.datetime(2026, 1, 2, 3, 4), 7, True, 2.5, b"bytes", ["vegan"], [" vegan "], ["vegan", "vegan"], [],
          ("a",), " vegan ", "vegan, no nuts", "  ", "x" * 70_000, "ab", "abcd", " ab ", "a\nb\tc", "é\n",
          ["é"], ["halal", "vegan"], ["vegan", "halal"], ["a", "b"], ["abcd"]]


EXTRA_FIELDS = """
[fields.choices]
type = "list"
class = "public"
values = ["vegan", "halal", "é"]

[fields.one_item]
type = "list"
class = "public"
max_items = 1

[fields.short_items]
type = "list"
class = "public"
max_length = 3

[fields.short_text]
type = "text"
class = "public"
max_length = 3

[fields.short_notes]
type = "text"
class = "public"
multiline = true
max_length = 3

[fields.level]
type = "enum"
class = "public"
values = ["low", "é", "vegan"]
"""


@pytest.mark.parametrize("extra", [False, True], ids=["default schema", "with list, text and enum variants"])
def test_row_encoder_matches_encode_for_every_field_and_shape(tmp_path: Path, extra: bool) -> None:
    """Every field of the schema with each value of a plain or awkward shape (NFD text,
    controls, lone surrogates, datetimes, over-long text, list spellings): the bulk
    encoder's result or error is encode's."""
    from vault.schema import default_schema_text
    text = default_schema_text() + (EXTRA_FIELDS if extra else "")
    with vault.create(f"sqlite:///{tmp_path / 'x.db'}", PASSPHRASE, schema=text) as v:
        _same_for_every_field(v)


def _same_for_every_field(v: vault.Vault) -> None:
    recs = v._records
    encode = recs.row_encoder()
    for f in recs.ses.schema.fields.values():
        for value in TRICKY:
            row = {f.name: value} if f.name == "legal_name" else {"legal_name": "A", f.name: value}
            assert _outcome(lambda: encode(row, "row 2: ")) == _outcome(lambda: recs.encode(row, "row 2: ")), \
                (f.name, repr(value)[:40])


def test_a_list_item_too_long_for_its_framing_is_a_validation_error(tmp_path: Path) -> None:
    """A schema may allow list items longer than the u16 length of the list framing
    (docs/format.md §3) holds in UTF-8: such an item is refused with a one-line error,
    in both encoders, instead of escaping as a struct.error."""
    from vault.schema import default_schema_text
    text = default_schema_text().replace('[fields.dietary]\ntype = "list"\n',
                                         '[fields.dietary]\ntype = "list"\nmax_length = 100000\n')
    assert "max_length = 100000" in text
    with vault.create(f"sqlite:///{tmp_path / 'l.db'}", PASSPHRASE, schema=text) as h:
        for item in ("a" * 70_000, "é" * 40_000):
            for encode in (h._records.encode, h._records.row_encoder()):
                with pytest.raises(ValidationError, match="longer than 65,535 bytes"):
                    encode({"legal_name": "A", "dietary": [item]}, "")
        h.add({"legal_name": "A", "dietary": ["a" * 65_535]})  # the longest item that fits


def test_an_enum_value_over_the_value_limit_is_refused_by_both_encoders(tmp_path: Path) -> None:
    """A schema may list an enum value longer than a stored value may be (1 MiB): a bulk
    insert refuses it as a single add does, instead of storing it."""
    from vault.schema import default_schema_text
    big = "x" * (F.MAX_VALUE_BYTES + 1)
    text = default_schema_text() + f'\n[fields.size]\ntype = "enum"\nclass = "public"\nvalues = ["{big}", "s"]\n'
    with vault.create(f"sqlite:///{tmp_path / 'e.db'}", PASSPHRASE, schema=text) as h:
        for encode in (h._records.encode, h._records.row_encoder()):
            with pytest.raises(ValidationError, match="longer than 1 MiB"):
                encode({"legal_name": "A", "size": big}, "")
        with pytest.raises(ValidationError):
            h.add_many([{"legal_name": "A", "size": big}, {"legal_name": "B"}])
        assert h.count() == 0


class _LooksLikeAName:
    """A key that hashes and compares equal to a field's name, but is no string."""

    def __hash__(self) -> int:
        return hash("badge_name")

    def __eq__(self, other: object) -> bool:
        return other == "badge_name"


def test_a_key_that_only_equals_a_field_name_is_an_unknown_field(v: vault.Vault) -> None:
    row = {"legal_name": "A", _LooksLikeAName(): "B"}
    for encode in (v._records.encode, v._records.row_encoder()):
        with pytest.raises(ValidationError, match="unknown field"):
            encode(row, "")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="unknown field"):
        v.add_many([row, {"legal_name": "C"}])  # type: ignore[list-item]
