"""What is normalised and indexed is capped (vault.index.capped_normalize): a value that
NFKC would blow up (U+FDFA expands 18x) is refused by its length before the normaliser
runs, with an error naming the field, so one CSV of such rows cannot stall an import."""

from __future__ import annotations

import pytest

import vault
from conftest import PASSPHRASE
from vault import _format as F
from vault import index as I

# 1 MiB of U+FDFA (3 bytes each in UTF-8): the largest value a field takes, ~6 MiB once NFKC'd
BOMB = "\ufdfa" * (F.MAX_VALUE_BYTES // 3)


def test_a_huge_value_is_refused_before_it_is_normalised(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cap is checked on the input's length first: the normaliser never sees the bomb."""
    seen: list[int] = []
    real = I.normalizer

    def spy(kind: str):  # type: ignore[no-untyped-def]
        fn = real(kind)
        return lambda v: (seen.append(len(v)), fn(v))[1]
    monkeypatch.setattr(I, "normalizer", spy)
    schema = vault.load_schema()
    for field in ("legal_name", "email", "phone", "passport_number"):
        with pytest.raises(vault.ValidationError, match=f"field '{field}' is too long to index") as e:
            I.normal_form(schema.fields[field], BOMB)
        assert e.value.field == field and "\ufdfa" not in str(e.value)
    assert seen == []
    # at the cap the input is normalised, and its expansion is held to the cap as well
    ok = "a" * F.MAX_INDEXED_BYTES
    assert I.normal_form(schema.fields["legal_name"], ok) == ok.encode()
    with pytest.raises(vault.ValidationError, match="too long to index"):
        I.normal_form(schema.fields["legal_name"], "\ufdfa" * (F.MAX_INDEXED_BYTES // 18 + 1))
    with pytest.raises(vault.ValidationError, match="too long to index"):
        I.normal_form(schema.fields["legal_name"], "a" * (F.MAX_INDEXED_BYTES + 1))


def test_writes_searches_and_imports_of_a_huge_value_fail_at_once(url: str) -> None:
    with vault.create(url, PASSPHRASE) as v:
        rid = v.add({"legal_name": "Amira Haddad", "email": "amira@example.org"})
        for call in (lambda: v.add({"legal_name": BOMB}),
                     lambda: v.update(rid, {"email": BOMB}),
                     lambda: v.import_rows([{"legal_name": "Ok Person"}, {"passport_number": BOMB}]),
                     lambda: v.find(legal_name=BOMB),
                     lambda: v.find_tokens(legal_name=BOMB)):
            with pytest.raises(vault.ValidationError, match="too long to index"):
                call()
        assert v.count() == 1 and v.get(rid)["email"] == "amira@example.org"
        # a field that is not indexed is not capped here (a per-field limit is the schema's)
        v.update(rid, {"organisation": "x" * (F.MAX_INDEXED_BYTES + 1)})


def test_a_stored_value_over_the_cap_is_skipped_not_fatal(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A value stored before the cap (an older release, or a modified client) stays readable:
    a search that decrypts it does not match it, a re-index leaves it out, an update of the
    record removes the terms it had."""
    with vault.create(url, PASSPHRASE) as v:
        monkeypatch.setattr(F, "MAX_INDEXED_BYTES", 10 * F.MAX_INDEXED_BYTES)
        long = "Amira " + "Haddad" * 1000
        rid = v.add({"legal_name": long, "email": "amira@example.org"})
        monkeypatch.undo()  # the cap is back
        assert [r.id for r in v.find(email="amira@example.org")] == [rid]
        assert v.find_tokens(legal_name="Amira") == []
        v.reindex()
        assert [r.id for r in v.find(email="amira@example.org")] == [rid]
        v.update(rid, {"legal_name": "Amira Haddad"})
        assert [r.id for r in v.find_tokens(legal_name="Amira")] == [rid]
        assert v.get(rid)["legal_name"] == "Amira Haddad"
