"""Record format 2 (docs/format.md 6b): rows of formats 1 and 2 side by side (written as the
releases before format 3 did), their migration by a re-encrypting rotation and a move, and
attacks specific to format 2's layout (format 3: tests/test_joint.py)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from vault.identity import Identity

import vault
from conftest import PASSPHRASE
from rawdb import RawDB
from vault import _format as F
from vault import envelope as E

ROWS = [{"legal_name": f"Amira Haddad {i}", "organisation": "Free Press Network", "email": f"a{i}@example.org",
         "phone": f"+961 1 234 {i:03d}", "badge_name": f"Amira{i}", "risk_level": "high",
         "risk_notes": f"Followed after trial {i}." * (i + 1), "dietary": ["vegan"], "arrival": "2026-11-08"}
        for i in range(8)]


def _fmt(raw: RawDB, rid: str) -> int:
    row = raw.row(rid)
    return row[1] if row[:2] in (F.ROW_V2_PREFIX, F.ROW_V3_PREFIX) else 1


def _values(v: vault.Vault, ids: list[str]) -> dict[str, dict[str, Any]]:
    return {r: {k: (x.isoformat() if isinstance(x, dt.date) else x) for k, x in dict(v.get(r)).items()} for r in ids}


@pytest.fixture
def mixed(url: str) -> Iterator[tuple[vault.Vault, RawDB, list[str], list[str]]]:
    """A vault holding four rows of record format 1 (written as the previous release did)
    and four of format 2 (written as the releases before format 3 did)."""
    v = vault.create(url, PASSPHRASE)
    v._access.codec.legacy = True  # the writer of the releases before format 2
    old = v.add_many(ROWS[:4])
    v._access.codec.legacy = False
    v._access.codec.newest = 2
    new = v.add_many(ROWS[4:])
    v._access.codec.newest = 3  # this release's writer from here on
    raw = RawDB(url)
    yield v, raw, old, new
    raw.close()
    v.close()


def test_old_and_new_rows_read_side_by_side(mixed) -> None:  # type: ignore[no-untyped-def]
    v, raw, old, new = mixed
    assert [_fmt(raw, r) for r in old + new] == [1] * 4 + [2] * 4
    got = _values(v, old + new)
    assert [got[r] for r in old + new] == ROWS
    assert v.get(old[1], fields=["email"])["email"] == ROWS[1]["email"]
    assert [r.id for r in v.find(email="a1@example.org")] == [old[1]]
    assert [r.id for r in v.find(email="a6@example.org")] == [new[2]]
    v.update(old[0], {"risk_level": "low", "dietary": None})  # an update keeps a row's format
    v.update(new[0], {"risk_level": "low", "dietary": None})
    assert _fmt(raw, old[0]) == 1 and _fmt(raw, new[0]) == 2
    assert v.get(old[0])["risk_level"] == v.get(new[0])["risk_level"] == "low"
    assert "dietary" not in v.get(old[0]) and "dietary" not in v.get(new[0])
    assert v.check_records().ok
    assert v.verify().ok


def test_reencrypt_rewrites_old_rows_in_the_new_format(mixed) -> None:  # type: ignore[no-untyped-def]
    v, raw, old, new = mixed
    before = _values(v, old + new)
    v.rotate(reencrypt=True, batch=3)
    assert [_fmt(raw, r) for r in old + new] == [3] * 8  # what this codec writes new rows in
    assert all(E.parse_dek_header(k).derived for r in old + new for k, _ in raw.envs(r).values())
    assert _values(v, old + new) == before
    assert v.check_records().ok  # the new DEK ids are logged (reencrypt entries)
    assert [r.id for r in v.find(email="a2@example.org")] == [old[2]]


def test_rotation_without_reencryption_keeps_each_row_format(mixed) -> None:  # type: ignore[no-untyped-def]
    v, raw, old, new = mixed
    before = _values(v, old + new)
    ids_before = {r: E.dek_ids(raw.row(r)) for r in old + new}
    cells_before = {r: {c: cells for c, (_, cells) in raw.envs(r).items()} for r in new}
    v.rotate(batch=3)
    assert [_fmt(raw, r) for r in old + new] == [1] * 4 + [2] * 4
    for r in new:  # derived DEKs wrapped under the new version (kind D), cells untouched
        assert {c: k[:2] for c, (k, _) in raw.envs(r).items()} == {c: b"\x01D" for c in raw.envs(r)}
        assert {c: cells for c, (_, cells) in raw.envs(r).items()} == cells_before[r]
    assert {r: E.dek_ids(raw.row(r)) for r in old + new} == ids_before  # same DEKs: same logged states
    assert _values(v, old + new) == before
    assert v.check_records().ok
    v.rotate(reencrypt=True)  # and a re-encryption after it: derived again, every row
    assert all(E.parse_dek_header(k).derived for r in old + new for k, _ in raw.envs(r).values())
    assert _values(v, old + new) == before


def test_move_writes_every_row_in_the_new_format(mixed, url2: str) -> None:  # type: ignore[no-untyped-def]
    v, raw, old, new = mixed
    before = sorted(_values(v, old + new).values(), key=lambda x: x["legal_name"])
    moved = vault.move(v, url2, PASSPHRASE + " moved", lead=Identity.generate())
    with moved.vault as dst:
        raw2 = RawDB(url2)
        ids = dst.ids()
        assert len(ids) == 8 and all(_fmt(raw2, r) == 3 for r in ids)
        assert sorted(_values(dst, ids).values(), key=lambda x: x["legal_name"]) == before
        raw2.close()


def test_a_compact_row_is_smaller() -> None:
    """What the format is for: the same record, about half the bytes (the benchmark,
    bench/bytes.py, measures whole vaults)."""
    from vault import _crypto as C
    from vault import compact
    from vault import schema as S
    sch = S.load()
    codec = compact.Codec(b"v" * 16, sch.classes, tuple(sch.fields))
    key = C.random_bytes(32)
    codec.key_entry("x", 1, C.Aead(key), b"", key, b"k" * 8)
    items = {c: sorted((n, f"value of {n}".encode()) for n in ROWS[0] if sch.fields[n].cls == c) for c in sch.classes}
    envs = [(c, b"k" * 8, 1, C.Aead(key), items[c]) for c in sch.classes]
    v1 = codec.seal_record(b"r" * 16, envs, C.random_bytes(sum(E.class_randomness(len(items[c])) for c in items)),
                           version=1)
    v2 = codec.seal_record(b"r" * 16, envs, C.random_bytes(compact.CLASS_RANDOMNESS * len(envs)))
    assert len(v2) < 0.6 * len(v1)


# -- attacks on the compact layout --------------------------------------------------------------
@pytest.fixture
def two(url: str) -> Iterator[tuple[vault.Vault, RawDB, str, str]]:
    v = vault.create(url, PASSPHRASE)
    v._access.codec.newest = 2
    a, b = v.add_many(ROWS[:2])
    v._access.codec.newest = 3
    raw = RawDB(url)
    assert _fmt(raw, a) == _fmt(raw, b) == 2
    yield v, raw, a, b
    raw.close()
    v.close()


def _refused(v: vault.Vault, rid: str, fields: list[str] | None = None) -> None:
    with pytest.raises(vault.IntegrityError) as info:
        v.get(rid, fields=fields)
    assert info.value.record_id == rid


def _raw_cells(raw: RawDB, rid: str, cls: str) -> tuple[bytes, list[tuple[int, bytes]]]:
    key, cells = raw.envs(rid)[cls]
    return key, E.unpack_cells_v2(cells)[0]


def test_field_numbers_exchanged(two) -> None:  # type: ignore[no-untyped-def]
    """Two cells keep their bytes and swap field numbers (framing only, no name to edit)."""
    v, raw, a, _ = two
    key, cells = _raw_cells(raw, a, "identity")
    (n1, c1), (n2, c2) = cells[0], cells[1]
    envs = raw.envs(a)
    envs["identity"] = (key, E.pack_cells_v2(sorted([(n1, c2), (n2, c1)]) + cells[2:]))
    raw.set_envs(a, envs)
    _refused(v, a)
    _refused(v, a, fields=[raw.codec().names[n2]])  # only the second asked for: still refused


def test_a_dropped_cell_fails_even_when_another_is_asked_for(two) -> None:  # type: ignore[no-untyped-def]
    """The set of cells is in the derived DEK: dropping one changes the DEK, and the first
    cell (always opened) fails, whichever field was asked for."""
    v, raw, a, _ = two
    names = raw.codec().names
    for drop in (0, 1):
        row = raw.row(a)
        key, cells = _raw_cells(raw, a, "identity")
        keep = [c for i, c in enumerate(cells) if i != drop]
        envs = raw.envs(a)
        envs["identity"] = (key, E.pack_cells_v2(keep))
        raw.set_envs(a, envs)
        _refused(v, a)
        _refused(v, a, fields=[names[keep[-1][0]]])
        _refused(v, a, fields=["passport_number"])  # a field the row lacks: no wanted cell to open
        raw.set_row(a, row)
    assert v.get(a)["legal_name"] == ROWS[0]["legal_name"]


def test_an_emptied_envelope_fails(two) -> None:  # type: ignore[no-untyped-def]
    """Every cell of a class removed: the check tag of an empty envelope cannot be made
    without the DEK; one copied from another record or class does not open."""
    v, raw, a, b = two
    key, _ = raw.envs(a)["risk"]
    other = raw.envs(b)
    for check in (b"\x00" * 16, E.unpack_cells_v2(other["risk"][1])[1] or b"\x01" * 16):
        envs = raw.envs(a)
        envs["risk"] = (key, E.pack_cells_v2([], check))
        raw.set_envs(a, envs)
        _refused(v, a, fields=["risk_level"])


def test_truncated_and_padded_frames_fail(two) -> None:  # type: ignore[no-untyped-def]
    v, raw, a, _ = two
    row = raw.row(a)
    for bad in (row[:-1], row[:-17], row[:40], row + b"\x00", row[:2], b"\x00\x02" + row[2:20],
                b"\x00\x03" + row[2:], row[:1]):
        raw.set_row(a, bad)
        _refused(v, a)
    raw.set_row(a, row)
    assert v.get(a)["email"] == ROWS[0]["email"]


def test_a_missing_or_extra_envelope_fails(two) -> None:  # type: ignore[no-untyped-def]
    v, raw, a, _ = two
    row = raw.row(a)
    envs = E.split_v2(row)
    raw.set_row(a, E.pack_v2(envs[:-1]))
    _refused(v, a)
    raw.set_row(a, E.pack_v2(envs + envs[-1:]))
    _refused(v, a)
    raw.set_row(a, E.pack_v2([envs[1], envs[0]] + envs[2:]))  # two classes exchanged
    _refused(v, a)


def test_a_derived_key_reference_from_another_record_fails(two) -> None:  # type: ignore[no-untyped-def]
    """Key reference and cells of record b's class put into record a: the DEK is derived
    from a's id, so nothing opens (the DEK id alone cannot carry a DEK across)."""
    v, raw, a, b = two
    envs_a, envs_b = raw.envs(a), raw.envs(b)
    envs_a["contact"] = envs_b["contact"]
    raw.set_envs(a, envs_a)
    _refused(v, a, fields=["email"])
    envs_a = raw.envs(a)
    envs_a["contact"] = (envs_b["contact"][0], raw.envs(a)["contact"][1])  # b's reference, a's cells
    raw.set_envs(a, envs_a)
    _refused(v, a, fields=["email"])


def test_an_older_envelope_of_the_same_record_is_found_by_the_record_check(two) -> None:  # type: ignore[no-untyped-def]
    """Replaying a whole older envelope (reference and cells) of the same record reads, as in
    format 1 (docs/threat-model.md); its DEK id is not the logged one, so the lead's record
    check names the row."""
    v, raw, a, _ = two
    before = raw.envs(a)
    v.update(a, {"email": "changed@example.org"})
    after = raw.envs(a)
    after["contact"] = before["contact"]
    raw.set_envs(a, after)
    assert v.get(a)["email"] == ROWS[0]["email"]
    got = v.check_records()
    assert got.rolled_back == (a,) and not got.ok  # the state before the update, logged then


def test_an_unknown_field_number_fails(two) -> None:  # type: ignore[no-untyped-def]
    v, raw, a, _ = two
    key, cells = _raw_cells(raw, a, "identity")
    row, envs0 = raw.row(a), raw.envs(a)
    for fno in (0, 250, raw.codec().numbers["email"]):  # none, beyond the schema, another class's
        raw.set_row(a, row)
        envs = dict(envs0)
        envs["identity"] = (key, E.pack_cells_v2([(fno, cells[0][1])] + cells[1:]))
        raw.set_envs(a, envs)
        _refused(v, a)


def test_every_reader_of_cells_applies_the_same_rules() -> None:
    """One parser of format-2 cells serves the row reader, the framing split and the cell
    unpacker: numbers strictly ascending, the long size form only from 256 blocks on,
    nothing past the end."""
    ct = bytes(48)  # one 32-byte block and a tag
    good = E.pack_cells_v2([(1, ct), (3, ct)])
    assert E.unpack_cells_v2(good) == ([(1, ct), (3, ct)], b"")
    assert E.cells_end(good + b"tail", 0) == len(good)
    for bad in (bytes([2, 3, 1]) + ct + bytes([1, 1]) + ct,  # descending
                bytes([2, 1, 1]) + ct + bytes([1, 1]) + ct,  # repeated
                bytes([1, 1, 0, 0, 0, 0, 1]) + ct,  # long form for one block
                good + b"x",  # trailing bytes
                good[:-1]):  # cut
        with pytest.raises(E.Malformed):
            E.unpack_cells_v2(bad)
