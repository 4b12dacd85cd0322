"""Record format 3 (docs/format.md 6c): one AEAD ciphertext per class envelope.

Rows of formats 1, 2 and 3 side by side, each updated in its own format, their migration by
``rotate --reencrypt`` (library and CLI), a rotation without re-encryption, and the attacks
that only a joint ciphertext invites (a block moved between cells with the bytes kept, a tag
or pieces from another envelope, a row relabelled as another format). The attacks common to
every format run on rows of formats 2 and 3 in tests/test_tamper.py.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from vault_cli.main import cli

import vault
from conftest import PASSPHRASE
from rawdb import RawDB
from vault import _format as F
from vault import envelope as E

ROWS = [{"legal_name": f"Amira Haddad {i}", "organisation": "Free Press Network of the Levant and North Africa",
         "email": f"a{i}@example.org", "phone": f"+961 1 234 {i:03d}", "badge_name": f"Amira{i}",
         "risk_level": "high", "risk_notes": f"Followed after trial {i}." * (i + 1), "dietary": ["vegan"],
         "arrival": "2026-11-08"} for i in range(9)]


def _fmt(raw: RawDB, rid: str) -> int:
    row = raw.row(rid)
    return row[1] if row[:2] in E.ROW_V23 else 1


def _values(v: vault.Vault, ids: list[str]) -> dict[str, dict[str, Any]]:
    return {r: {k: (x.isoformat() if isinstance(x, dt.date) else x) for k, x in dict(v.get(r)).items()} for r in ids}


def _three(v: vault.Vault) -> list[list[str]]:
    """Three rows each of formats 1, 2 and 3, written as the releases that wrote them did."""
    codec = v._access.codec  # type: ignore[attr-defined]
    codec.legacy = True
    f1 = v.add_many(ROWS[:3])
    codec.legacy = False
    codec.newest = 2
    f2 = v.add_many(ROWS[3:6])
    codec.newest = 3
    return [f1, f2, v.add_many(ROWS[6:])]


@pytest.fixture
def three(url: str) -> Iterator[tuple[vault.Vault, RawDB, list[list[str]]]]:
    v = vault.create(url, PASSPHRASE)
    groups = _three(v)
    raw = RawDB(url)
    yield v, raw, groups
    raw.close()
    v.close()


def test_three_formats_read_update_and_search_side_by_side(three) -> None:  # type: ignore[no-untyped-def]
    v, raw, groups = three
    ids = [r for g in groups for r in g]
    assert [_fmt(raw, r) for r in ids] == [1] * 3 + [2] * 3 + [3] * 3
    assert [_values(v, ids)[r] for r in ids] == ROWS
    for g in groups:
        rid = g[1]
        assert v.get(rid, fields=["email"]) == {"email": ROWS[ids.index(rid)]["email"]}
        assert [r.id for r in v.find(email=ROWS[ids.index(rid)]["email"])] == [rid]
        v.update(rid, {"risk_level": "low", "dietary": None})  # an update keeps the row's format
    assert [_fmt(raw, r) for r in ids] == [1] * 3 + [2] * 3 + [3] * 3
    for g in groups:
        got = v.get(g[1])
        assert got["risk_level"] == "low" and "dietary" not in got
    assert v.check_records().ok and v.verify().ok


def test_a_format_3_row_is_smaller_by_a_tag_per_cell_beyond_one_per_class(three) -> None:  # type: ignore[no-untyped-def]
    """What the format is for, exactly: the same values in format 2 and 3 differ by 16 bytes
    for every cell beyond the first of each class that has cells (empty classes: one tag
    either way)."""
    v, raw, _ = three
    codec = v._access.codec  # type: ignore[attr-defined]
    codec.newest = 2
    f2 = v.add(ROWS[0])
    codec.newest = 3
    f3 = v.add(ROWS[0])
    cells = {c: len(raw.cells(f3, c)) for c in raw.envs(f3)}
    saved = 16 * sum(n - 1 for n in cells.values() if n)
    assert saved >= 16 * 4  # nine fields in five classes
    assert len(raw.row(f2)) - len(raw.row(f3)) == saved


def test_reencrypt_rewrites_formats_1_and_2_in_format_3(three) -> None:  # type: ignore[no-untyped-def]
    v, raw, groups = three
    ids = [r for g in groups for r in g]
    before = _values(v, ids)
    v.rotate(reencrypt=True, batch=4)
    assert [_fmt(raw, r) for r in ids] == [3] * 9
    assert all(E.parse_dek_header(k).derived for r in ids for k, _ in raw.envs(r).values())
    assert _values(v, ids) == before
    assert v.check_records().ok and v.verify().ok
    assert [r.id for r in v.find(email="a1@example.org")] == [ids[1]]


def test_dvault_rotate_reencrypt_migrates_every_row(tmp_path: Path) -> None:
    """The same migration through the command line, on the embedded default."""
    path = tmp_path / "m.vault"
    with vault.create(path, PASSPHRASE) as v:
        groups = _three(v)
        before = _values(v, [r for g in groups for r in g])
    r = CliRunner(env={"DVAULT_PASSPHRASE": PASSPHRASE}).invoke(cli, ["rotate", "--reencrypt", "--vault", str(path)])
    assert r.exit_code == 0, r.output
    raw = RawDB(f"sqlite:///{path}")
    assert {_fmt(raw, rid) for g in groups for rid in g} == {3}
    raw.close()
    with vault.open(path, PASSPHRASE) as v:
        assert _values(v, list(before)) == before and v.verify().ok


def test_rotation_without_reencryption_wraps_format_3_keys_and_keeps_the_cells(three) -> None:  # type: ignore[no-untyped-def]
    v, raw, groups = three
    new = groups[2]
    before = _values(v, new)
    cells_before = {r: {c: cells for c, (_, cells) in raw.envs(r).items()} for r in new}
    ids_before = {r: E.dek_ids(raw.row(r)) for r in new}
    v.rotate(batch=2)
    for r in new:
        assert _fmt(raw, r) == 3
        assert {k[:2] for k, _ in raw.envs(r).values()} == {b"\x01D"}
        assert {c: cells for c, (_, cells) in raw.envs(r).items()} == cells_before[r]
        assert E.dek_ids(raw.row(r)) == ids_before[r]
    assert _values(v, new) == before
    assert v.check_records().ok


def test_move_writes_format_3(three, url2: str) -> None:  # type: ignore[no-untyped-def]
    from vault.identity import Identity
    v, _raw, groups = three
    moved = vault.move(v, url2, PASSPHRASE + " moved", lead=Identity.generate())
    with moved.vault as dst:
        raw2 = RawDB(url2)
        assert {_fmt(raw2, r) for r in dst.ids()} == {3} and len(dst.ids()) == 9
        raw2.close()


# -- attacks on the joint layout ----------------------------------------------------------------
def _refused(v: vault.Vault, rid: str, fields: list[str] | None = None) -> None:
    with pytest.raises(vault.IntegrityError) as info:
        v.get(rid, fields=fields)
    assert info.value.record_id == rid


def _identity(raw: RawDB, rid: str) -> tuple[bytes, list[tuple[int, bytes]], bytes]:
    key, cells = raw.envs(rid)["identity"]
    parsed, tag = E.unpack_cells_v2(cells, joint=True)
    return key, parsed, tag


def _put_identity(raw: RawDB, rid: str, key: bytes, cells: list[tuple[int, bytes]], tag: bytes) -> None:
    envs = raw.envs(rid)
    envs["identity"] = (key, E.pack_cells_v2(cells, tag, joint=True))
    raw.set_envs(rid, envs)


def test_a_block_moved_between_neighbouring_cells_fails(three) -> None:  # type: ignore[no-untyped-def]
    """The ciphertext bytes stay exactly as written and in order; only the sizes that cut
    them into cells change. The sizes are in the associated data, so the tag fails."""
    v, raw, groups = three
    a = groups[2][0]
    row = raw.row(a)
    key, cells, tag = _identity(raw, a)
    numbers = raw.codec().numbers
    legal, org = numbers["legal_name"], numbers["organisation"]
    got = dict(cells)
    assert len(got[org]) == 64  # the organisation takes two blocks
    moved = dict(got)
    moved[legal], moved[org] = got[legal] + got[org][:32], got[org][32:]
    assert b"".join(moved[n] for n, _ in cells) == b"".join(ct for _, ct in cells)
    _put_identity(raw, a, key, [(n, moved[n]) for n, _ in cells], tag)
    _refused(v, a)
    _refused(v, a, fields=["organisation"])
    raw.set_row(a, row)
    assert v.get(a)["organisation"] == ROWS[6]["organisation"]


def test_a_tag_or_pieces_from_another_envelope_fail(three) -> None:  # type: ignore[no-untyped-def]
    v, raw, groups = three
    a, b = groups[2][0], groups[2][1]
    key_a, cells_a, tag_a = _identity(raw, a)
    _, cells_b, tag_b = _identity(raw, b)
    row = raw.row(a)
    for cells, tag in ((cells_a, tag_b), (cells_b, tag_a), (cells_b, tag_b)):
        _put_identity(raw, a, key_a, cells, tag)
        _refused(v, a, fields=["legal_name"])
        raw.set_row(a, row)
    v.update(a, {"email": "new@example.org"})  # the record's own contact envelope, an older tag
    before_update = raw.envs(a)
    v.update(a, {"legal_name": "Someone Else"})
    key_now, cells_now, _ = _identity(raw, a)
    old_tag = E.unpack_cells_v2(before_update["identity"][1], joint=True)[1]
    _put_identity(raw, a, key_now, cells_now, old_tag)
    _refused(v, a, fields=["legal_name"])


def test_a_row_relabelled_as_another_format_fails(three) -> None:  # type: ignore[no-untyped-def]
    """The first two bytes choose the layout: a format-3 row read as format 2 (or a format-2
    row as 3) mis-frames or fails its tags; never wrong plaintext."""
    v, raw, groups = three
    for rid, other in ((groups[2][0], F.ROW_V2_PREFIX), (groups[1][0], F.ROW_V3_PREFIX)):
        row = raw.row(rid)
        raw.set_row(rid, other + row[2:])
        _refused(v, rid)
        _refused(v, rid, fields=["email"])
        raw.set_row(rid, row)
        assert v.get(rid)["email"]


def test_a_format_2_envelope_of_the_same_record_in_a_format_3_row_fails(url: str) -> None:
    """An envelope the record really had in format 2 (its key and cells, framed anew as
    format 3 would frame them) does not open in a format-3 row: the DEK label differs and
    the layout has no per-cell tags."""
    with vault.create(url, PASSPHRASE) as v:
        v._access.codec.newest = 2  # type: ignore[attr-defined]
        rid = v.add(ROWS[0])
        raw = RawDB(url)
        old = raw.envs(rid)
        v._access.codec.newest = 3  # type: ignore[attr-defined]
        v.rotate(reencrypt=True)
        assert _fmt(raw, rid) == 3
        key, cells = old["identity"]
        parsed, _ = E.unpack_cells_v2(cells)
        for framed in ([(n, ct[:-16]) for n, ct in parsed], parsed):  # tags dropped, or kept as bytes
            envs = raw.envs(rid)
            envs["identity"] = (key, E.pack_cells_v2(framed, parsed[-1][1][-16:], joint=True))
            raw.set_envs(rid, envs)
            _refused(v, rid, fields=["legal_name"])
        raw.close()


def test_an_emptied_format_3_envelope_fails(three) -> None:  # type: ignore[no-untyped-def]
    """Every cell removed: the tag over nothing cannot be made without the DEK; the empty
    envelope's tag of another record does not open here."""
    v, raw, groups = three
    a, b = groups[2][0], groups[2][1]
    v.update(b, {"risk_level": None, "risk_notes": None})
    empty_tag = E.unpack_cells_v2(raw.envs(b)["risk"][1], joint=True)[1]
    key, _ = raw.envs(a)["risk"]
    for tag in (bytes(16), empty_tag):
        envs = raw.envs(a)
        envs["risk"] = (key, E.pack_cells_v2([], tag, joint=True))
        raw.set_envs(a, envs)
        _refused(v, a, fields=["risk_level"])
    assert v.get(b, fields=["risk_level"]) == {}


def test_format_3_waits_for_a_vault_only_this_release_opens(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A vault whose index plan is still of version 2 (made by an earlier release, which can
    still open it) gets new rows in format 2, which that release reads; once a re-index has
    made the plan version 3 (which earlier releases refuse to open) new rows are format 3,
    and a re-encryption then moves every row to it."""
    from test_index_prefix import _person, _v2_vault
    ids = _v2_vault(url, monkeypatch, n=3)
    raw = RawDB(url)
    assert {_fmt(raw, r) for r in ids} == {2}
    with vault.open(url, PASSPHRASE) as v:
        one, many = v.add(_person(3)), v.add_many([_person(4), _person(5)])
        assert {_fmt(raw, r) for r in [one, *many]} == {2}
        v.reindex()
        newer = [v.add(_person(6)), *v.add_many([_person(7)])]
        assert {_fmt(raw, r) for r in newer} == {3}
        v.rotate(reencrypt=True)
        every = ids + [one, *many] + newer
        assert {_fmt(raw, r) for r in every} == {3}
        assert [r.id for r in v.find(email="p4@example.org")] == [many[0]] and v.verify().ok
    raw.close()


def test_a_value_of_256_blocks_or_more_takes_the_long_size_form(url: str) -> None:
    """risk_notes may hold 10,000 characters: 313 blocks, beyond a u8 size (format.md §6b's
    long form), sealed one by one and in bulk, read whole and alone."""
    long = "Followed after the trial; " * 350  # 9,100 bytes
    with vault.create(url, PASSPHRASE) as v:
        one = v.add({"legal_name": "A", "risk_notes": long, "risk_level": "high"})
        many = v.add_many([{"legal_name": "B", "risk_notes": long}, {"legal_name": "C", "risk_notes": long[:8500]}])
        raw = RawDB(url)
        notes = raw.codec().numbers["risk_notes"]
        for rid in (one, *many):
            assert _fmt(raw, rid) == 3
            stored = raw.envs(rid)["risk"][1]
            cells, _ = E.unpack_cells_v2(stored, joint=True)
            blocks = len(dict(cells)[notes]) // 32
            assert blocks >= 256
            assert bytes([notes, 0]) + blocks.to_bytes(4, "big") in stored  # the long form
        raw.close()
        assert v.get(one)["risk_notes"] == long and v.get(one, fields=["risk_level"]) == {"risk_level": "high"}
        assert v.get(many[0], fields=["risk_notes"])["risk_notes"] == long
        assert v.get(many[1])["risk_notes"] == long[:8500]
        assert v.verify().ok
