"""Record format 3 (docs/format.md 6c) against a keyless database writer: attacks on
format-3 rows beyond tests/test_joint.py and tests/test_tamper.py, and the rules
format 3 must keep (no DEK encrypts two plaintexts, older rows untouched).

Each attack must end in IntegrityError (never in wrong plaintext, never in a rotation or an
adoption that launders the tampered envelope into a fresh wrap).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cryptography.exceptions import InvalidTag

import vault
from conftest import PASSPHRASE
from rawdb import RawDB
from vault import _format as F
from vault import envelope as E
from vault.identity import Identity

LONG = "Followed after the trial; " * 360  # 9,360 bytes: 293 blocks, the long size form
PERSON = {"legal_name": "Amira Haddad", "organisation": "Free Press Network of the Levant and North Africa",
          "email": "amira@example.org", "phone": "+961 1 234 567", "badge_name": "Amira",
          "risk_level": "high", "risk_notes": LONG, "dietary": "vegan", "arrival": "2026-11-08"}
OTHER = {"legal_name": "Kofi Mensah", "organisation": "Land Rights Watch", "email": "kofi@example.org",
         "badge_name": "Kofi", "risk_level": "low", "risk_notes": "None known.", "dietary": "none"}


@pytest.fixture
def v3(url: str) -> Iterator[tuple[vault.Vault, RawDB]]:
    v = vault.create(url, PASSPHRASE)
    raw = RawDB(url)
    yield v, raw
    raw.close()
    v.close()


def _refused(v: vault.Vault, rid: str, fields: list[str] | None = None) -> vault.IntegrityError:
    with pytest.raises(vault.IntegrityError) as info:
        v.get(rid, fields=fields)
    assert info.value.record_id == rid
    for value in list(PERSON.values()) + list(OTHER.values()):
        assert value not in str(info.value) and value not in repr(info.value)
    return info.value


def _joint(raw: RawDB, rid: str, cls: str) -> tuple[bytes, list[tuple[int, bytes]], bytes]:
    key, cells = raw.envs(rid)[cls]
    parsed, tag = E.unpack_cells_v2(cells, joint=True)
    return key, parsed, tag


def _put(raw: RawDB, rid: str, cls: str, key: bytes, cells: bytes) -> None:
    envs = raw.envs(rid)
    envs[cls] = (key, cells)
    raw.set_envs(rid, envs)


# -- sizes: the long form (b >= 256) -------------------------------------------------------------
def test_the_long_size_form_round_trips_and_its_blocks_cannot_move(v3) -> None:  # type: ignore[no-untyped-def]
    v, raw = v3
    a = v.add(PERSON)
    row = raw.row(a)
    assert row[:2] == F.ROW_V3_PREFIX
    key, cells, tag = _joint(raw, a, "risk")
    numbers = raw.codec().numbers
    got = dict(cells)
    level, notes = numbers["risk_level"], numbers["risk_notes"]
    assert len(got[notes]) // 32 >= 256 and level < notes
    assert b"\x00" + (len(got[notes]) // 32).to_bytes(4, "big") in raw.envs(a)["risk"][1]  # long form
    assert v.get(a, fields=["risk_notes"]) == {"risk_notes": LONG}
    assert v.get(a, fields=["risk_level"]) == {"risk_level": "high"}
    # a block moved from the long cell to its neighbour (bytes kept, sizes edited)
    moved = [(level, got[level] + got[notes][:32]), (notes, got[notes][32:])]
    _put(raw, a, "risk", key, E.pack_cells_v2(moved, tag, joint=True))
    _refused(v, a, ["risk_level"])
    _refused(v, a, ["risk_notes"])
    raw.set_row(a, row)
    # the same sizes written in a form the spec forbids: the long form below 256 blocks
    body = raw.envs(a)["risk"][1]
    blocks = len(got[level]) // 32
    short = bytes([level, blocks])
    assert short in body
    _put(raw, a, "risk", key, body.replace(short, bytes([level, 0]) + blocks.to_bytes(4, "big"), 1))
    _refused(v, a, ["risk_level"])
    raw.set_row(a, row)
    assert v.get(a)["risk_notes"] == LONG


# -- keys moved between formats -------------------------------------------------------------------
def test_a_format_2_kind_d_key_and_its_cells_in_the_same_records_format_3_row_fail(v3) -> None:  # type: ignore[no-untyped-def]
    """The record's own format-2 envelope after a rotation (kind D, the wrap authentic for
    this record, class, version and field set) put into its format-3 row: the DEK unwraps,
    but it never encrypted anything under the zero nonce, so the joint tag cannot be made."""
    v, raw = v3
    codec = v._access.codec  # type: ignore[attr-defined]
    codec.newest = 2
    a = v.add(PERSON)
    v.rotate(["identity"])  # identity's derived DEK wrapped: kind D inside format 2
    d2, cells2 = raw.envs(a)["identity"]
    assert d2[:2] == b"\x01D"
    parsed2, _ = E.unpack_cells_v2(cells2)
    codec.newest = 3
    v.rotate(reencrypt=True)
    assert raw.row(a)[:2] == F.ROW_V3_PREFIX
    row = raw.row(a)
    for framed, tag in (([(n, ct[:-16]) for n, ct in parsed2], parsed2[-1][1][-16:]),
                        ([(n, ct[:-16]) for n, ct in parsed2], parsed2[0][1][-16:]),
                        ([(n, ct) for n, ct in parsed2][:-1] + [(parsed2[-1][0], parsed2[-1][1][:-16])],
                         parsed2[-1][1][-16:])):
        _put(raw, a, "identity", d2, E.pack_cells_v2(framed, tag, joint=True))
        _refused(v, a, ["legal_name"])
        _refused(v, a)
        raw.set_row(a, row)
    assert v.get(a)["legal_name"] == PERSON["legal_name"]


def test_a_format_3_kind_d_key_and_its_pieces_in_format_2_or_1_framing_fail(v3) -> None:  # type: ignore[no-untyped-def]
    """The reverse: a rotated format-3 envelope's kind D (the DEK that encrypted the joint
    ciphertext under the zero nonce) framed as format 2 (cell = piece + 16 bytes, the nonce
    the field number) or as format 1, where the writer names the nonce in the cell, so the
    attacker can name the zero nonce and hand in the joint ciphertext as a one-cell value.
    The associated data differ, so no tag opens."""
    v, raw = v3
    a = v.add(PERSON)
    v.rotate(["public"])
    row = raw.row(a)
    envs = raw.envs(a)
    d3, parsed, tag = _joint(raw, a, "public")
    assert d3[:2] == b"\x01D" and len(parsed) == 1  # one cell: piece || tag is one whole AES-GCM output
    fno, piece = parsed[0]
    # format 2: the whole joint ciphertext as the cell's ct
    envs2 = dict(envs)
    envs2["public"] = (d3, E.pack_cells_v2([(fno, piece + tag)]))
    raw.set_row(a, E.pack_v2([envs2[c] for c in raw.codec().order], 2))
    _refused(v, a, ["badge_name"])
    # format 1: same bytes, the zero nonce written into the cell, every envelope framed as
    # format 1 (only "public" is opened; the others are framing)
    dek_id = d3[10:18]
    cell = b"\x01F" + dek_id + bytes(12) + piece + tag
    others = [(c, k if len(k) in E.DEK_LENS else d3, E.pack_cells({})) for c, (k, _) in envs.items() if c != "public"]
    raw.set_row(a, E.pack_record([("public", d3, E.pack_cells({"badge_name": cell}))] + others))
    _refused(v, a, ["badge_name"])
    raw.set_row(a, row)
    assert v.get(a, fields=["badge_name"]) == {"badge_name": "Amira"}


# -- the rotation and adoption paths: nothing tampered is laundered ------------------------------
@pytest.mark.parametrize("reencrypt", [False, True])
def test_a_rotation_leaves_a_tampered_format_3_envelope(v3, reencrypt: bool) -> None:  # type: ignore[no-untyped-def]
    """authenticate_derived opens the whole joint ciphertext before the DEK is wrapped: a
    block moved between cells (the first cell untouched, which is all format 2's check
    opened) leaves the envelope as it is, counted, not wrapped into an authentic-looking
    kind D."""
    v, raw = v3
    a = v.add(PERSON)
    b = v.add(OTHER)
    key, cells, tag = _joint(raw, a, "risk")
    (n1, c1), (n2, c2) = cells
    _put(raw, a, "risk", key, E.pack_cells_v2([(n1, c1 + c2[:32]), (n2, c2[32:])], tag, joint=True))
    assert v.rotate(["risk"], reencrypt=reencrypt)["unreadable"] == 1
    assert raw.envs(a)["risk"][0] == key  # not wrapped
    _refused(v, a, ["risk_level"])
    assert v.get(b, fields=["risk_level"]) == {"risk_level": "low"}


def test_a_write_only_writers_format_3_envelope_tampered_stays_refused_after_adoption(url: str) -> None:
    """A staff member (identity and risk write-only) adds in format 3: kind W keys beside kind
    H. A cell block moved inside the W envelope fails for the lead; revoking the writer
    adopts the W key into kind D (its signature checked, the cells left as they are): the
    envelope still fails, it is not laundered, and untampered W envelopes read after it."""
    lead, staff = Identity.generate(), Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        user = v.add_user(staff.public, "sam", "staff")
    with vault.open(url, identity=staff) as s:
        a, b = s.add(PERSON), s.add(OTHER)
    raw = RawDB(url)
    try:
        assert raw.row(a)[:2] == F.ROW_V3_PREFIX
        kinds = {c: k[:2] for c, (k, _) in raw.envs(a).items()}
        assert kinds["identity"] == kinds["risk"] == b"\x01W" and kinds["public"] == b"\x02H"
        key, cells, tag = _joint(raw, a, "risk")
        (n1, c1), (n2, c2) = cells
        _put(raw, a, "risk", key, E.pack_cells_v2([(n1, c1 + c2[:32]), (n2, c2[32:])], tag, joint=True))
        with vault.open(url, identity=lead) as v:
            assert v.get(b)["risk_notes"] == "None known."
            _refused(v, a, ["risk_level"])
            try:
                v.remove_user(user.user_id, rotate=False)
            except vault.IntegrityError:
                pass  # refusing the adoption is as good
            assert v.get(b)["risk_notes"] == "None known."
            _refused(v, a, ["risk_level"])
            assert v.get(a, fields=["legal_name"]) == {"legal_name": PERSON["legal_name"]}
    finally:
        raw.close()


# -- nonce: no DEK encrypts two plaintexts ------------------------------------------------------
def test_one_dek_id_never_carries_two_ciphertexts_through_updates_rotations_and_bulk(v3) -> None:  # type: ignore[no-untyped-def]
    """The zero nonce is safe only if a DEK encrypts one plaintext. A DEK is named by its
    class key, record, class and DEK id (and the field set, bound in the wrap or derivation):
    across adds (one and bulk), updates, rotations with and without re-encryption, a
    (record, class, DEK id) must always come with the same cells."""
    v, raw = v3
    seen: dict[tuple[str, str, bytes], bytes] = {}

    def sweep() -> None:
        for rid in v.ids():
            data = raw.row(rid)
            if data[:2] != F.ROW_V3_PREFIX:
                continue
            for cls, (key, cells) in raw.envs(rid).items():
                k = (rid, cls, key[10:18])
                assert seen.setdefault(k, cells) == cells, "a DEK id came back over other ciphertext"

    ids = [v.add(PERSON), *v.add_many([OTHER, PERSON, OTHER])]
    sweep()
    for i, rid in enumerate(ids):
        v.update(rid, {"risk_level": "medium" if i % 2 else "low"})
        sweep()
        v.update(rid, {"risk_level": "high", "dietary": None})
        sweep()
    v.rotate(["risk", "identity"])
    sweep()
    v.update(ids[0], {"risk_notes": "Changed."})
    sweep()
    v.rotate(reencrypt=True)
    sweep()
    v.update(ids[1], {"email": "k@example.org"})
    sweep()
    assert len({k[2] for k in seen}) == len(seen)


# -- older rows -----------------------------------------------------------------------------------
def test_reencrypt_of_a_vault_with_a_version_2_plan_leaves_format_2(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a re-encrypting rotation does to a vault an earlier release made (version 2
    index plan): the rotation's own re-index makes the plan version 3 only at its end, so
    the rows it re-encrypts are still written in format 2 (format 1 rows move to 2, format
    2 stay), and the next ``rotate --reencrypt`` moves them to format 3."""
    from test_index_prefix import _person, _v2_vault
    ids = _v2_vault(url, monkeypatch, n=3)
    raw = RawDB(url)
    try:
        with vault.open(url, PASSPHRASE) as v:
            v.rotate(reencrypt=True)
            assert {raw.row(r)[1] for r in ids} == {2}
            new = v.add(_person(9))
            assert raw.row(new)[:2] == F.ROW_V3_PREFIX
            v.rotate(reencrypt=True)
            assert {raw.row(r)[1] for r in ids} == {3}
            assert v.verify().ok
    finally:
        raw.close()


def test_a_write_only_roles_update_of_a_format_3_row_keeps_format_3_and_its_w_keys(url: str) -> None:
    """Staff update a class they hold in a row they wrote (kind W for identity and risk):
    the row stays format 3, the W envelopes stay as they were, the lead reads all of it;
    and the same update of a format-2 row keeps format 2."""
    lead, staff = Identity.generate(), Identity.generate()
    with vault.create(url, PASSPHRASE, lead=lead) as v:
        v.add_user(staff.public, "sam", "staff")
        v._access.codec.newest = 2  # type: ignore[attr-defined]
        old = v.add(OTHER)
    raw = RawDB(url)
    try:
        with vault.open(url, identity=staff) as s:
            a = s.add(PERSON)
            w_before = {c: raw.envs(a)[c] for c in ("identity", "risk")}
            s.update(a, {"email": "new@example.org", "dietary": None})
            s.update(old, {"email": "kofi2@example.org"})
        assert raw.row(a)[:2] == F.ROW_V3_PREFIX and raw.row(old)[:2] == F.ROW_V2_PREFIX
        assert {c: raw.envs(a)[c] for c in ("identity", "risk")} == w_before
        with vault.open(url, identity=lead) as v:
            got = dict(v.get(a))
            assert got["email"] == "new@example.org" and "dietary" not in got
            assert got["risk_notes"] == LONG and got["legal_name"] == PERSON["legal_name"]
            assert v.get(old)["email"] == "kofi2@example.org"
            assert v.verify().ok
    finally:
        raw.close()


# -- the spec-only reader (tests/vectors/reader.py) on the vector ---------------------------------
def test_the_spec_only_reader_reads_record_v3_and_refuses_every_tampered_row() -> None:
    """reader.py, written from docs/format.md alone, on record_v3.json: it reads the row
    and its rotated form to the vector's values, and refuses each of the tampered rows the
    library refuses (tests/test_vectors.py), so the two implementations agree on them."""
    import json
    import sys
    from pathlib import Path
    here = Path(__file__).resolve().parent / "vectors"
    sys.path.insert(0, str(here))
    import reader  # noqa: E402  (tests/vectors/reader.py)
    vec = json.loads((here / "record_v3.json").read_text())
    h = bytes.fromhex
    r = reader.Reader.__new__(reader.Reader)
    r.vault_id = h(vec["vault_id"])
    r.kr = reader.Keyring([dict(kind=1, name=k["class"], version=k["version"], kid=h(k["kid"]), key=h(k["key"]))
                           for k in vec["class_keys"] + [vec["rotated_key"]]])
    r.classes = [k["class"] for k in vec["class_keys"]]
    field_class = vec["field_classes"]
    r.fields = {n: {"class": field_class[n], "type": "text"} for n in vec["fields"]}
    r.meta, r.users, r.schema, r.unreadable, r.sealed_fields = {}, {}, {}, {}, {}
    rid = h(vec["record_id"])
    want = {n: h(x).decode() for vals in vec["values"].values() for n, x in vals.items()}
    for row in (vec["row"], vec["row_rotated"]):
        out, ids, _kinds = r.read_record(rid, h(row))
        assert out == want and len(ids) == 8 * len(r.classes)
    for bad in vec["tampered"]:
        with pytest.raises(Exception) as info:
            r.read_record(rid, h(bad["row"]))
        assert not isinstance(info.value, AssertionError), bad["why"]
        if bad["fails_on"] == "tag":  # a valid frame: the reader's parse passes it, the tag refuses it
            assert isinstance(info.value, InvalidTag), bad["why"]
