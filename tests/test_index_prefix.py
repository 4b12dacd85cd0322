"""Blind-index rows store 8-byte record-id prefixes (index plan version 3, docs/format.md §10
"Stored rows"): what a new vault writes and finds, two records sharing a prefix, removal
(update, shred) only where no other record still has the prefix, a vault whose plan is of
version 2 (16-byte rows) before and after its re-index, malformed rows and plans, verify."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

import vault
from conftest import PASSPHRASE
from vault import _crypto as C
from vault import index as I

P = b"\x5a\x17\xc3\x09\x00\xfe\x42\x81"  # the shared prefix


def _ph(url: str) -> str:
    return "?" if url.startswith("sqlite") else "%s"


def _rows(url: str, sql: str, params: tuple = ()) -> list:
    eng = sa.create_engine(url)
    try:
        with eng.begin() as c:
            res = c.exec_driver_sql(sql, params)
            return list(res) if res.returns_rows else []
    finally:
        eng.dispose()


def _index(url: str) -> list[tuple[int, str, int, bytes]]:
    return [(int(g), str(n), int(v), bytes(i)) for g, n, v, i in _rows(url, "SELECT gen, name, value, ids FROM dv_index")]


def _prefixes(url: str, gen: int | None = None, width: int = 8) -> list[bytes]:
    """Every stored prefix (with repeats), of the rows of ``gen`` (every generation: None)."""
    out = []
    for g, _n, _v, ids in _index(url):
        if gen is None or g == gen:
            assert ids and len(ids) % width == 0
            out += [ids[i:i + width] for i in range(0, len(ids), width)]
    return out


def _plan(url: str) -> dict:
    return json.loads(bytes(_rows(url, "SELECT value FROM dv_meta WHERE name = 'index_plan'")[0][0]))


@pytest.fixture
def planted_ids(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """Record ids to hand out, in order, for the next 16-byte draws of the CSPRNG (a new
    record's id); once the list is empty, draws are random again."""
    queue: list[bytes] = []
    real = C.random_bytes

    def draw(n: int) -> bytes:
        if n == 16 and queue:
            return queue.pop(0)
        return real(n)
    monkeypatch.setattr(C, "random_bytes", draw)
    yield queue


def _person(i: int, email: str | None = None) -> dict:
    return {"legal_name": f"Person Number{i}", "email": email or f"p{i}@example.org", "badge_name": "B"}


def test_a_new_vault_writes_8_byte_prefixes_and_finds(url: str) -> None:
    with vault.create(url, PASSPHRASE) as v:
        ids = v.add_many([_person(i) for i in range(20)]) + [v.add(_person(20))]
        plan = _plan(url)
        assert plan["v"] == 3 and plan["id_bytes"] == 8
        stored = set(_prefixes(url))
        assert stored == {bytes.fromhex(x)[:8] for x in ids}
        for i in (0, 7, 20):
            assert [r.id for r in v.find(email=f"p{i}@example.org")] == [ids[i]]
            assert [r.id for r in v.find_tokens(legal_name=f"number{i}")] == [ids[i]]
        assert v.verify().ok


def test_records_sharing_a_prefix_are_both_found_and_each_removal_keeps_the_other(
        url: str, planted_ids: list[bytes]) -> None:
    """Population 1: every index has 0 bits, so both records sit in every bucket together,
    under one stored prefix. Update, then shred one: the other stays findable by every
    field and the prefix stays; shred the other too: the prefix is gone."""
    a, b = P + b"\x01" * 8, P + b"\x02" * 8
    with vault.create(url, PASSPHRASE, population=1) as v:
        planted_ids += [a, b]
        got = [v.add(_person(1)), v.add(_person(2))]
        assert got == [a.hex(), b.hex()] and not planted_ids
        assert set(_prefixes(url)) == {P}
        assert all(len(ids) == 8 for *_k, ids in _index(url))  # one prefix per bucket for both
        assert [r.id for r in v.find(email="p1@example.org")] == [a.hex()]
        assert [r.id for r in v.find(email="p2@example.org")] == [b.hex()]
        v.update(a.hex(), {"email": "moved@example.org", "legal_name": "Moved Person"})
        assert [r.id for r in v.find(email="p2@example.org")] == [b.hex()]
        assert [r.id for r in v.find_tokens(legal_name="number2")] == [b.hex()]
        assert [r.id for r in v.find(email="moved@example.org")] == [a.hex()]
        assert {n for _g, n, _v, _i in _index(url)} >= {"email", "legal_name", "legal_name#tokens"}
        v.delete(a.hex())
        assert set(_prefixes(url)) == {P}
        assert [r.id for r in v.find(email="p2@example.org")] == [b.hex()]
        assert [r.id for r in v.find(legal_name="Person Number2")] == [b.hex()]
        assert [r.id for r in v.find_tokens(legal_name="number2")] == [b.hex()]
        assert v.find(email="moved@example.org") == []
        assert v.verify().ok
        v.delete(b.hex())
        assert _index(url) == []


def test_a_shared_prefix_is_kept_where_only_the_removed_record_was(url: str, planted_ids: list[bytes]) -> None:
    """With real buckets (a precise plan: 20 bits per index, so p1, p2 and moved@ share a
    bucket with odds of about 3 in a million) the two records' e-mails are in different buckets:
    removing a's term keeps the prefix in a's old bucket (b's id starts with it: it only
    adds a candidate that decryption drops) and a search there finds nothing wrong."""
    a, b = P + b"\x01" * 8, P + b"\x02" * 8
    with vault.create(url, PASSPHRASE, population=1 << 20, k=1, precise=True) as v:
        planted_ids += [a, b]
        v.add(_person(1))
        v.add(_person(2))
        before = _index(url)
        v.update(a.hex(), {"email": "moved@example.org"})
        assert [r.id for r in v.find(email="p2@example.org")] == [b.hex()]
        assert [r.id for r in v.find(email="moved@example.org")] == [a.hex()]
        assert v.find(email="p1@example.org") == []
        after = _index(url)
        assert all(ids == P for *_k, ids in before + after)
        assert len(after) == len(before) + 1  # a's old e-mail bucket kept, its new one added
        report = v.verify()
        assert [p.kind for p in report.problems] == ["entry the record's values do not give (planted)"]
        v.delete(b.hex())  # a still has the prefix: b's buckets keep it
        assert len(_index(url)) == len(after)
        v.delete(a.hex())
        assert _index(url) == []


def test_a_shred_leaves_no_prefix_of_a_record_none_shares(url: str) -> None:
    with vault.create(url, PASSPHRASE) as v:
        ids = v.add_many([_person(i) for i in range(30)])
        gone = bytes.fromhex(ids[4])
        held = [ids for *_k, ids in _index(url) if gone[:8] in [ids[i:i + 8] for i in range(0, len(ids), 8)]]
        assert len(held) >= 3  # e-mail, name, its tokens
        v.delete(ids[4])
        assert gone[:8] not in _prefixes(url)
        assert set(_prefixes(url)) == {bytes.fromhex(x)[:8] for i, x in enumerate(ids) if i != 4}
        assert v.find(email="p4@example.org") == []
        assert [r.id for r in v.find(email="p5@example.org")] == [ids[5]]


def _v2_vault(url: str, monkeypatch: pytest.MonkeyPatch, n: int = 12) -> list[str]:
    """A vault as the release before plan version 3 made it: a version 2 plan, 16-byte rows
    (make_plan at whole ids writes the version 2 text)."""
    real = I.make_plan
    with monkeypatch.context() as mp:
        mp.setattr(I, "make_plan", lambda *a, **k: dataclasses.replace(real(*a, **k), id_bytes=16))
        with vault.create(url, PASSPHRASE) as v:
            ids = v.add_many([_person(i) for i in range(n)])
    plan = _plan(url)
    assert plan["v"] == 2 and "id_bytes" not in plan
    assert {len(ids) % 16 for *_k, ids in _index(url)} == {0}
    assert set(_prefixes(url, width=16)) == {bytes.fromhex(x) for x in ids}
    return ids


def test_a_version_2_vault_keeps_working_then_its_reindex_writes_prefixes(
        url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = _v2_vault(url, monkeypatch)
    with vault.open(url, PASSPHRASE) as v:
        assert [r.id for r in v.find(email="p3@example.org")] == [ids[3]]
        ids.append(v.add(_person(12)))
        v.update(ids[0], {"email": "zero@example.org"})
        v.delete(ids[1])
        assert _plan(url)["v"] == 2  # untouched until the next re-index
        assert set(_prefixes(url, width=16)) == {bytes.fromhex(x) for i, x in enumerate(ids) if i != 1}
        assert [r.id for r in v.find(email="p12@example.org")] == [ids[12]]
        assert [r.id for r in v.find(email="zero@example.org")] == [ids[0]]
        assert v.verify().ok
        v.reindex()
        plan = _plan(url)
        assert plan["v"] == 3 and plan["id_bytes"] == 8 and plan["gen"] == 2
        assert {g for g, *_r in _index(url)} == {2}
        assert set(_prefixes(url)) == {bytes.fromhex(x)[:8] for i, x in enumerate(ids) if i != 1}
        assert [r.id for r in v.find(email="p3@example.org")] == [ids[3]]
        assert [r.id for r in v.find(email="zero@example.org")] == [ids[0]]
        assert v.verify().ok


def test_a_re_index_interrupted_writes_each_generation_at_its_width(
        url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Between a version 2 plan's generation (16 bytes) and the pending version 3 one (8),
    an add writes both at their widths, a search reads the live one, a shred clears both."""
    ids = _v2_vault(url, monkeypatch, n=6)

    def stop(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with vault.open(url, PASSPHRASE) as v:
        with pytest.raises(KeyboardInterrupt):
            v.reindex(batch=2, progress=stop)
        assert {g for g, *_r in _index(url)} == {1, 2}
        new = v.add(_person(6))
        assert bytes.fromhex(new) in _prefixes(url, gen=1, width=16)
        assert bytes.fromhex(new)[:8] in _prefixes(url, gen=2)
        assert [r.id for r in v.find(email="p6@example.org")] == [new]
        v.delete(ids[0])  # in the first batch: in both generations
        assert bytes.fromhex(ids[0]) not in _prefixes(url, gen=1, width=16)
        assert bytes.fromhex(ids[0])[:8] not in _prefixes(url, gen=2)
        v.reindex()
        assert {g for g, *_r in _index(url)} == {2} and _plan(url)["id_bytes"] == 8
        assert set(_prefixes(url)) == {bytes.fromhex(x)[:8] for x in ids[1:] + [new]}
        assert [r.id for r in v.find(email="p6@example.org")] == [new]
        assert v.verify().ok


def test_a_rotation_of_a_version_2_vault_ends_with_prefix_rows(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = _v2_vault(url, monkeypatch, n=5)
    with vault.open(url, PASSPHRASE) as v:
        v.rotate()
        assert _plan(url)["v"] == 3
        assert set(_prefixes(url)) == {bytes.fromhex(x)[:8] for x in ids}
        assert [r.id for r in v.find(email="p2@example.org")] == [ids[2]]


@pytest.mark.parametrize("length", [12, 7, 0])
def test_a_row_that_is_not_whole_prefixes_is_refused(url: str, length: int) -> None:
    with vault.create(url, PASSPHRASE, population=1) as v:
        rid = bytes.fromhex(v.add(_person(1)))
    _rows(url, f"UPDATE dv_index SET ids = {_ph(url)} WHERE name = 'email'", ((rid * 2)[:length],))
    with vault.open(url, PASSPHRASE) as v, pytest.raises(vault.IntegrityError, match="malformed row"):
        v.find(email="p1@example.org")


@pytest.mark.parametrize("width", [16, 4, "8", True, None])
def test_a_version_3_plan_of_another_width_is_refused(url: str, monkeypatch: pytest.MonkeyPatch,
                                                       width: object) -> None:
    """Only 8 exists: a plan naming another width (its MAC and signature taken as good here,
    as a holder of the meta and lead keys could make them) does not open."""
    from vault import plans
    vault.create(url, PASSPHRASE).close()
    plan = _plan(url)
    if width is None:
        del plan["id_bytes"]
    else:
        plan["id_bytes"] = width
    _rows(url, f"UPDATE dv_meta SET value = {_ph(url)} WHERE name = 'index_plan'",
          (json.dumps(plan, sort_keys=True, separators=(",", ":")).encode(),))
    monkeypatch.setattr(plans.K, "verify_plan", lambda *a: None)
    monkeypatch.setattr(plans.K, "verify_text", lambda *a: None)
    with pytest.raises(vault.IntegrityError, match="unparsable"):
        vault.open(url, PASSPHRASE)


def test_verify_is_clean_then_reports_a_planted_prefix_and_repairs_at_the_width(url: str) -> None:
    with vault.create(url, PASSPHRASE) as v:
        ids = v.add_many([_person(i) for i in range(8)])
        assert v.verify().ok
        gen = _plan(url)["gen"]
        _rows(url, "INSERT INTO dv_index (gen, name, value, chunk, ids) VALUES "
                   f"({_ph(url)}, {_ph(url)}, {_ph(url)}, {_ph(url)}, {_ph(url)})",
              (gen, "email", 1, b"\x07" * 8, b"\xee" * 8))
        report = v.verify()
        assert [(p.check, p.kind) for p in report.problems] == \
            [("index", "entry for an id that is no record (planted, or left by a shred)")]
        _rows(url, "DELETE FROM dv_index WHERE name = 'legal_name'")
        report = v.verify(repair_index=True)
        assert report.repaired["index terms removed"] == 1 and report.repaired["index terms added"] == 8
        assert v.verify().ok
        assert b"\xee" * 8 not in _prefixes(url)
        assert set(_prefixes(url)) == {bytes.fromhex(x)[:8] for x in ids}
        assert [r.id for r in v.find(legal_name="Person Number2")] == [ids[2]]
