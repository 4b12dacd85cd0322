"""Known-answer vectors (tests/vectors/*.json): our code writes exactly these bytes and
reads them back; failure vectors fail the way their ``expect`` says."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand
from hypothesis import given, settings
from hypothesis import strategies as st

import vault
from vault import _crypto as C
from vault import _format as F
from vault import envelope as E
from vault import keys as K

VEC = Path(__file__).resolve().parent / "vectors"


def load(name: str) -> dict:
    return json.loads((VEC / name).read_text("utf-8"))


def b(x: str) -> bytes:
    return bytes.fromhex(x)


@pytest.fixture
def real_floor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(F, "KDF_FLOOR", F.KdfParams(3, 65536, 4))


def test_padding() -> None:
    for case in load("padding.json")["cases"]:
        assert E.pad(b(case["plaintext"])) == b(case["padded"])
        assert E.unpad(b(case["padded"])) == b(case["plaintext"])


def test_list_value_encoding() -> None:
    """The library, the spec-only reader and the vector agree on §3's list encoding."""
    sys.path.insert(0, str(VEC))  # tests/vectors/reader.py, whichever test imported it first
    try:
        from reader import FormatError as ReaderError  # type: ignore[import-not-found]
        from reader import decode_list  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(VEC))

    from vault import values as VAL
    from vault.schema import load as load_schema
    v = load("value_list_v1.json")
    dietary = load_schema().fields["dietary"]
    for case in v["cases"]:
        assert VAL.encode_list(case["items"]) == b(case["encoded"]) == dietary.encode(case["items"])
        assert E.pad(b(case["encoded"])) == b(case["padded"])
        assert VAL.decode_list(b(case["encoded"])) == case["items"] == decode_list(b(case["encoded"]))
    for bad in v["invalid"]:
        with pytest.raises(ValueError):
            VAL.decode_list(b(bad))
        with pytest.raises((ReaderError, UnicodeDecodeError)):
            decode_list(b(bad))


@pytest.mark.parametrize("name", ["field_v1.json", "field_v1_bad_tag.json", "field_v1_wrong_field.json"])
def test_field(name: str) -> None:
    v = load(name)
    dek = C.Aead(b(v["dek"]))
    args = (b(v["vault_id"]), b(v["record_id"]), v["field"])
    if v["expect"] == "success":
        assert E.seal_field(dek, b(v["dek_id"]), *args, b(v["plaintext"]), nonce=b(v["nonce"])) == b(v["blob"])
        assert E.open_field(dek, *args, b(v["blob"])) == b(v["plaintext"])
    else:
        assert v["expect"] == "auth_failure"
        with pytest.raises(C.AuthFailure):
            E.open_field(dek, *args, b(v["blob"]))


@pytest.mark.parametrize("name", ["dek_v1.json", "dek_v1_wrong_manifest.json"])
def test_dek(name: str) -> None:
    v = load(name)
    ck = C.Aead(b(v["class_key"]))
    ctx = (b(v["vault_id"]), b(v["record_id"]), v["class"], v["fields_present"])
    if v["expect"] == "success":
        got = E.wrap_dek(ck, b(v["class_kid"]), v["class_version"], b(v["dek_id"]), b(v["dek"]), *ctx,
                         nonce=b(v["nonce"]))
        assert got == b(v["blob"])
        assert E.unwrap_dek(ck, v["class_version"], *ctx, b(v["blob"])) == b(v["dek"])
    else:
        with pytest.raises(C.AuthFailure):
            E.unwrap_dek(ck, v["class_version"], *ctx, b(v["blob"]))


def test_sealed_dek() -> None:
    """Kind E (unsigned, written before database schema v5): opened only to adopt it."""
    v = load("sealed_dek_v1.json")
    box = E.class_box_secret(b(v["class_key"]))
    assert C.x25519_public(box) == b(v["class_box_public"])
    ctx = (b(v["vault_id"]), b(v["record_id"]), v["class"], v["fields_present"])
    assert E.unseal_dek(box, v["class_version"], *ctx, b(v["blob"]), legacy=True) == b(v["dek"])
    with pytest.raises(C.AuthFailure):  # readers refuse it: anyone with the public key could have made it
        E.unseal_dek(box, v["class_version"], *ctx, b(v["blob"]))
    with pytest.raises(C.AuthFailure):
        E.unseal_dek(box, v["class_version"], ctx[0], ctx[1], ctx[2], ["legal_name"], b(v["blob"]), legacy=True)


def test_signed_sealed_dek() -> None:
    """Kind W: what the library seals is the vector's layout and is read back; the vector opens
    only with its writer's key, and not at another record, field set or for another writer."""
    v = load("sealed_dek_signed_v1.json")
    box = E.class_box_secret(b(v["class_key"]))
    ctx = (b(v["vault_id"]), b(v["record_id"]), v["class"], v["fields_present"])
    blob, wid, vk = b(v["blob"]), b(v["writer_id"]), b(v["writer_ed25519_public"])
    writers = {(wid, v["class"]): vk}.get

    def lookup(writer: bytes, cls: str) -> bytes | None:
        return writers((writer, cls))
    assert len(blob) == E.SIGNED_DEK_LEN and E.parse_dek_header(blob).writer == wid
    assert E.unseal_dek(box, v["class_version"], *ctx, blob, lookup) == b(v["dek"])
    assert C.Signer(b(v["writer_ed25519_seed"]))(b(v["signed_message"])) == blob[-64:]
    for bad in (dict(writers=None), dict(writers=lambda w, c: None),
                dict(writers=lambda w, c: C.ed25519_public(bytes(32)))):
        with pytest.raises(C.AuthFailure):
            E.unseal_dek(box, v["class_version"], *ctx, blob, bad["writers"])
    with pytest.raises(C.AuthFailure):  # another record
        E.unseal_dek(box, v["class_version"], ctx[0], bytes(16), ctx[2], ctx[3], blob, lookup)
    with pytest.raises(C.AuthFailure):  # a dropped cell
        E.unseal_dek(box, v["class_version"], ctx[0], ctx[1], ctx[2], ["legal_name"], blob, lookup)
    flipped = bytearray(blob)
    flipped[40] ^= 1  # inside the box: the signature covers it
    with pytest.raises(C.AuthFailure):
        E.unseal_dek(box, v["class_version"], *ctx, bytes(flipped), lookup)
    mine = E.seal_dek_to_class(C.x25519_public(box), b(v["class_kid"]), v["class_version"], b(v["dek_id"]),
                               b(v["dek"]), *ctx, wid, C.Signer(b(v["writer_ed25519_seed"])))
    assert mine[:26] == blob[:26] and len(mine) == len(blob)  # sealing is randomised
    assert E.unseal_dek(box, v["class_version"], *ctx, mine, lookup) == b(v["dek"])


def test_record_state() -> None:
    """The token an audit entry names a record row's state by (format.md 13a)."""
    from vault import audit as A
    v = load("record_state_v1.json")
    row = b(v["row"])
    assert E.dek_ids(row) == b(v["dek_ids"])
    key = A.state_key(b(v["meta_key"]))
    assert A.record_state(key, b(v["vault_id"]), b(v["record_id"]), row) == v["token"]
    with pytest.raises(E.Malformed):
        E.dek_ids(row[:-1])


def _spec_envelopes(row: bytes, classes: list[str]) -> list[tuple[str, bytes, bytes]]:
    """(class, DEK id, body) per envelope in schema order, by format.md 6, 6b and 6c alone
    (no vault code): format 1's body is its cells container, formats 2 and 3's every byte
    after the key, through the check tag or the envelope's tag."""
    import struct
    got: dict[str, tuple[bytes, bytes]] = {}
    if row[:2] in (b"\x00\x02", b"\x00\x03"):
        joint, pos = row[1] == 3, 2
        for cls in classes:
            klen = {b"\x02H": 18, b"\x01D": 78, b"\x01W": 202}[row[pos:pos + 2]]
            did, pos = row[pos + 10:pos + 18], pos + klen
            start, count = pos, row[pos]
            pos += 1
            for _ in range(count):
                blocks, pos = row[pos + 1], pos + 2
                if blocks == 0:
                    blocks, pos = struct.unpack(">I", row[pos:pos + 4])[0], pos + 4
                pos += 32 * blocks + (0 if joint else 16)
            pos += 16 if joint or count == 0 else 0
            got[cls] = (did, row[start:pos])
    else:
        pos = 1
        for _ in range(row[0]):
            n = row[pos]
            cls, pos = row[pos + 1:pos + 1 + n].decode("ascii"), pos + 1 + n
            dl = struct.unpack(">H", row[pos:pos + 2])[0]
            did, pos = row[pos + 12:pos + 20], pos + 2 + dl
            cl = struct.unpack(">I", row[pos:pos + 4])[0]
            got[cls], pos = (did, row[pos + 4:pos + 4 + cl]), pos + 4 + cl
    assert pos == len(row) and sorted(got) == sorted(classes)
    return [(c, *got[c]) for c in classes]


def test_record_state_v2_from_the_spec() -> None:
    """The second kind of record states (format.md 13a, database schema v9), recomputed
    from the spec with hashlib, hmac and cryptography's HKDF alone: per class a part over
    the envelope's DEK id and bytes, the token the record's tag and a MAC over the parts
    in schema order; a rewrap (row_rotated) keeps both."""
    import hmac
    v = load("record_state_v2.json")
    vid, rid, classes = b(v["vault_id"]), b(v["record_id"]), v["classes"]
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"dvault/v2/record-state").derive(b(v["meta_key"]))
    assert key.hex() == v["state_key"]
    assert len(v["cases"]) == 5
    assert [c["row"] for c in v["cases"]] == [load("record_v1.json")["row"]] + [
        load(f"record_v{n}.json")[k] for n in (2, 3) for k in ("row", "row_rotated")]
    for case in v["cases"]:
        envs = _spec_envelopes(b(case["row"]), classes)
        assert {c: d.hex() for c, d, _ in envs} == case["dek_ids"]
        parts = [hmac.new(key, b"part" + vid + rid + bytes([len(c)]) + c.encode("ascii") + did + body,
                          hashlib.sha256).digest()[:16] for c, did, body in envs]
        assert {c: p.hex() for (c, _, _), p in zip(envs, parts, strict=True)} == case["parts"]
        def b64url(raw: bytes) -> str:
            return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")
        tag = b64url(hmac.new(key, b"rec" + vid + rid, hashlib.sha256).digest()[:12])
        token = tag + b64url(hmac.new(key, b"row" + vid + b"".join(parts), hashlib.sha256).digest()[:24])
        assert token == case["token"] and len(token) == 48 and tag == v["record_tag"]
    by = {c["source"]: c for c in v["cases"]}
    for n in (2, 3):  # a rewrap replaces the key only
        assert by[f"record_v{n}.json row"]["parts"] == by[f"record_v{n}.json row_rotated"]["parts"]
    assert len({c["token"] for c in v["cases"]}) == 3


def test_record_state_v2_library() -> None:
    """vault.record_states gives the vector's parts and token of every case, from the parts
    alone too (as the check recomputes an update's), and refuses a truncated row."""
    from vault import record_states as RS
    v = load("record_state_v2.json")
    rid = b(v["record_id"])
    assert RS.state_key_v2(b(v["meta_key"])) == b(v["state_key"])
    states = RS.States(RS.state_key_v2(b(v["meta_key"])), b(v["vault_id"]), v["classes"])
    for case in v["cases"]:
        row = b(case["row"])
        assert [p.hex() for p in states.parts(rid, row)] == [case["parts"][c] for c in v["classes"]]
        assert states.named_parts(rid, row) == case["parts"]
        assert states.token(rid, row) == case["token"] and RS.TOKEN_V2.fullmatch(case["token"])
        assert states.tag(rid) + str(states.mac_of_named(case["parts"])) == case["token"]
        assert RS.record_of(case["token"]) == v["record_tag"]
        assert states.mac_of_named({**case["parts"], "extra": "00" * 16}) is None
        assert states.mac_of_named({**case["parts"], v["classes"][0]: case["parts"][v["classes"][0]].upper()}) is None
        with pytest.raises(E.Malformed):
            states.parts(rid, row[:-1])


def test_record_row_hot_path() -> None:
    """The Codec used by add()/get()/records() produces and reads the exact row bytes."""
    v = load("record_v1.json")
    vid, rid = b(v["vault_id"]), b(v["record_id"])
    keys = {k["class"]: k for k in v["class_keys"]}
    classes = tuple(keys)
    codec = E.Codec(vid, classes)
    envs = []
    for cls in classes:
        k = keys[cls]
        items = sorted((n, b(x)) for n, x in v["values"][cls].items())
        envs.append((cls, b(k["kid"]), k["version"], C.Aead(b(k["key"])), items))
    row = codec.seal_record(rid, envs, b"".join(b(r) for r in v["randomness"]))
    assert row == b(v["row"])
    lookup = {b(k["kid"]): codec.key_entry(k["class"], k["version"], C.Aead(b(k["key"]))) for k in v["class_keys"]}
    field_class = {n: cls for cls, vals in v["values"].items() for n in vals}
    plain = codec.open_record(b(v["row"]), rid, lookup, {c: None for c in classes}, field_class)
    assert plain == {n: b(x) for vals in v["values"].values() for n, x in vals.items()}


def _record_vector(v: dict[str, Any]) -> tuple[bytes, tuple[str, ...], Any, dict[bytes, Any], list[Any]]:
    """What a record vector of format 2 or 3 needs: its record id, classes, a codec with every
    class key registered (the rotated one too), and seal_record's envelopes."""
    from vault import compact
    vid, rid = b(v["vault_id"]), b(v["record_id"])
    keys = {k["class"]: k for k in v["class_keys"]}
    classes = tuple(keys)
    codec = compact.Codec(vid, classes, tuple(v["fields"]))
    entries = {}
    for k in v["class_keys"] + [v["rotated_key"]]:
        entries[b(k["kid"])] = codec.key_entry(k["class"], k["version"], C.Aead(b(k["key"])), b"", b(k["key"]),
                                               b(k["kid"]))
    envs = [(cls, b(keys[cls]["kid"]), 1, C.Aead(b(keys[cls]["key"])),
             sorted((n, b(x)) for n, x in v["values"][cls].items())) for cls in classes]
    return rid, classes, codec, entries, envs


def test_record_v2() -> None:
    """Record format 2 (docs/format.md 6b): the library writes exactly the vector's row, reads
    it and its rotated form (identity's DEK wrapped, kind D), and refuses every tampered row."""
    v = load("record_v2.json")
    rid, classes, codec, entries, envs = _record_vector(v)
    assert codec.seal_record(rid, envs, b"".join(b(r) for r in v["randomness"])) == b(v["row"])
    field_class = {n: cls for cls, vals in v["values"].items() for n in vals}
    field_class["risk_notes"] = "risk"
    want = {n: b(x) for vals in v["values"].values() for n, x in vals.items()}
    for row in (v["row"], v["row_rotated"]):
        assert codec.open_record(b(row), rid, entries, {c: None for c in classes}, field_class) == want
        for name in want:  # one field asked for: the first cell authenticates the envelope anyway
            only = {field_class[name]: [name]}
            assert codec.open_record(b(row), rid, entries, only, field_class) == {name: want[name]}
    assert E.dek_ids(b(v["row"])) == E.dek_ids(b(v["row_rotated"]))  # a rewrap keeps the record state
    for bad in v["tampered"]:
        for only in ({c: None for c in classes}, {"identity": ["organisation"]}, {"identity": ["legal_name"]}):
            if "check tag" in bad["why"]:
                only = {"risk": None}
            with pytest.raises((E.Malformed, E.EnvelopeFailure, E.FieldFailure)):
                codec.open_record(b(bad["row"]), rid, entries, only, field_class)
    prk = HKDF(hashes.SHA256(), 32, None, b"dvault/v2/record-dek-key").derive(b"\x07" * 32)
    from vault import compact
    assert compact.derive_dek(b"\x07" * 32, b"info") == HKDFExpand(hashes.SHA256(), 32, b"info").derive(prk)


def test_record_v3() -> None:
    """Record format 3 (docs/format.md 6c): the library writes exactly the vector's row (one
    record at a time and in bulk), reads it and its rotated form (identity's DEK wrapped, kind
    D), one field or all, and refuses every tampered row, whichever field is asked for."""
    v = load("record_v3.json")
    rid, classes, codec, entries, envs = _record_vector(v)
    rnd = b"".join(b(r) for r in v["randomness"])
    assert codec.seal_record(rid, envs, rnd, version=3) == b(v["row"])
    seal = codec.batch_sealer([(c, kid, ver, key) for c, kid, ver, key, _ in envs])
    assert seal is not None
    by_class = {c: {n: b(x) for n, x in vals.items()} for c, vals in v["values"].items()}
    assert seal(rid, by_class, rnd) == b(v["row"])
    for cls, (key, cells) in codec.unpack(b(v["row"])).items():  # joint_aad, what a rotation checks with
        names = codec.cell_names(b(v["row"]), cells)
        dek = codec.derived_dek(entries[key[2:10]], key, rid, cls, names, 3)
        codec.authenticate_derived(dek, key, rid, cells, 3)
        with pytest.raises(C.AuthFailure):
            codec.authenticate_derived(dek, key, rid, cells[:-1] + bytes([cells[-1] ^ 1]), 3)
    field_class = v["field_classes"]
    want = {n: b(x) for vals in v["values"].values() for n, x in vals.items()}
    for row in (v["row"], v["row_rotated"]):
        assert codec.open_record(b(row), rid, entries, {c: None for c in classes}, field_class) == want
        for name in want:
            only = {field_class[name]: [name]}
            assert codec.open_record(b(row), rid, entries, only, field_class) == {name: want[name]}
    assert E.dek_ids(b(v["row"])) == E.dek_ids(b(v["row_rotated"]))  # a rewrap keeps the record state
    assert len(v["tampered"]) == 9
    for bad in v["tampered"]:
        row = b(bad["row"])
        # "tag": the frame is valid, so only the envelope's tag can refuse it (never Malformed);
        # "frame": the parse of format.md 6b refuses it (a reader may meet a key or tag first)
        assert frame_ok(row, classes, v["fields"], field_class) == (bad["fails_on"] == "tag"), bad["why"]
        for only in ({c: None for c in classes}, {"identity": ["organisation"]}, {"identity": ["legal_name"]}):
            if "empty envelope" in bad["why"]:
                only = {"risk": None}
            failure = (E.EnvelopeFailure, E.FieldFailure) if bad["fails_on"] == "tag" else \
                (E.Malformed, E.EnvelopeFailure, E.FieldFailure)
            with pytest.raises(failure):
                codec.open_record(row, rid, entries, only, field_class)


def frame_ok(row: bytes, classes: tuple[str, ...], fields: list[str], field_class: dict[str, str]) -> bool:
    """Whether a format-2 or 3 row passes format.md 6b's parse alone, no key used: the
    envelopes framed, one per class, each cell's field number ascending and of its class."""
    try:
        envs = E.row_envelopes(row, classes)
        for cls, (_key, cells) in envs.items():
            parsed, _check = E.unpack_cells_v2(cells, row[:2] == b"\x00\x03")
            if any(not 1 <= fno <= len(fields) or field_class[fields[fno - 1]] != cls for fno, _ in parsed):
                return False
    except E.Malformed:
        return False
    return True


def test_keyring() -> None:
    v = load("keyring_v1.json")
    ring = K.Keyring([K.Key(k["kind"], k["name"], k["version"], b(k["kid"]), b(k["key"])) for k in v["keys"]])
    assert ring.to_bytes() == b(v["plaintext"])
    blob = K.seal_keyring(b(v["slot_secret"]), b(v["slot_kid"]), b(v["vault_id"]), ring, nonce=b(v["nonce"]))
    assert blob == b(v["blob"])
    back = K.open_keyring(b(v["slot_secret"]), b(v["vault_id"]), b(v["blob"]))
    assert back.to_bytes() == b(v["plaintext"])


def test_passphrase_slot(real_floor: None) -> None:
    v = load("passphrase_slot_v1.json")
    params = F.KdfParams(v["t"], v["m_kib"], v["p"])
    assert C.argon2id(v["passphrase"].encode(), b(v["salt"]), v["t"], v["m_kib"], v["p"]) == b(v["kek"])
    blob = K.seal_passphrase_slot(v["passphrase"], b(v["slot_secret"]), b(v["slot_kid"]), b(v["vault_id"]),
                                  params, salt=b(v["salt"]), nonce=b(v["nonce"]))
    assert blob == b(v["blob"])
    assert K.open_passphrase_slot(b(v["blob"]), v["passphrase"], b(v["vault_id"])) == b(v["slot_secret"])
    w = load("passphrase_slot_v1_wrong.json")
    assert w["expect"] == "wrong_passphrase"
    with pytest.raises(vault.WrongPassphrase):
        K.open_passphrase_slot(b(w["blob"]), w["passphrase"], b(w["vault_id"]))


def test_schema_mac() -> None:
    v = load("schema_mac_v1.json")
    meta = K.Key(K.KIND_META_KEY, "", 1, b(v["meta_kid"]), b(v["meta_key"]))
    assert K.mac_schema(meta, b(v["vault_id"]), v["schema"]) == b(v["blob"])
    K.verify_schema(K.Keyring([meta]), b(v["vault_id"]), v["schema"], b(v["blob"]))
    with pytest.raises(vault.IntegrityError):
        K.verify_schema(K.Keyring([meta]), b(v["vault_id"]), v["schema"] + " ", b(v["blob"]))


def test_blind_index() -> None:
    from vault import index as I
    from vault.schema import Field

    v = load("blind_index_v1.json")
    ck = b(v["class_key"])
    for case in v["cases"]:
        assert I.derive_index_key(ck, case["field"], case["kind"]) == b(case["index_key"])
        f = Field(case["field"], "text", "identity", search="exact", normalize="none", tokens=True)
        schema = vault.load_schema('[schema]\nname="x"\nversion=1\nclasses=["identity"]\n'
                                   f'[fields.{case["field"]}]\ntype="text"\nclass="identity"\nsearch="exact"\n'
                                   'normalize="none"\ntokens=true\n')
        ix = I.Indexer(schema, {"identity": ck}, case["bits"])
        name = case["field"] if case["kind"] == "exact" else case["field"] + "#tokens"
        assert ix._value(name, case["normalised"].encode("utf-8")) == case["value"]
        if case["kind"] == "exact":
            assert ix.exact_term(f, case["normalised"]) == (case["field"], case["value"])


def test_pseudonym() -> None:
    from vault import index as I
    from vault import pseudonym as P

    v = load("pseudonym_v1.json")
    keys = I.PurposeKeys(v["purpose"], b(v["purpose_kid"]), b(v["purpose_key"]))
    rid = b(v["record_id"])
    assert keys.value(rid) == v["value"]
    assert P.format(v["value"], P.purpose_prefix(v["purpose"])) == v["pseudonym"]
    assert P.parse(v["pseudonym"], "BA") == v["value"]
    assert keys.tag(v["value"]) == b(v["tag"])
    assert keys.seal_ref(b(v["tag"]), rid, nonce=b(v["nonce"])) == b(v["ref"])
    assert keys.open_ref(b(v["tag"]), b(v["ref"])) == rid
    with pytest.raises(C.AuthFailure):
        keys.open_ref(bytes(16), b(v["ref"]))


def test_index_plan_mac() -> None:
    v = load("index_plan_mac_v1.json")
    meta = K.Key(K.KIND_META_KEY, "", 1, b(v["meta_kid"]), b(v["meta_key"]))
    assert K.mac_plan(meta, b(v["vault_id"]), v["plan"]) == b(v["blob"])
    K.verify_plan(K.Keyring([meta]), b(v["vault_id"]), v["plan"], b(v["blob"]))


def test_index_plan_v2() -> None:
    """A version 2 plan (still read, no longer written): it is our joint allocation with
    whole 16-byte ids, its text and MAC are the vector's; v1 still parses."""
    import dataclasses

    from vault import index as I
    v = load("index_plan_v2.json")
    meta = K.Key(K.KIND_META_KEY, "", 1, b(v["meta_kid"]), b(v["meta_key"]))
    assert K.mac_plan(meta, b(v["vault_id"]), v["plan"]) == b(v["blob"])
    schema = vault.load_schema()
    assert I.all_index_names(schema) == v["indexes"]
    plan = dataclasses.replace(I.make_plan(1, schema, v["population"], v["k"], {"contact": 1, "identity": 1}),
                               id_bytes=16)
    assert plan.to_text() == v["plan"] and I.Plan.from_text(v["plan"]) == plan
    assert I.Plan.from_text(v["plan"]).id_bytes == 16
    old = I.Plan.from_text(load("index_plan_mac_v1.json")["plan"])
    assert (old.mode, old.per_index, old.bits_for("email"), old.id_bytes) == ("uniform", None, 5, 16)


def test_index_plan_v3() -> None:
    """A version 3 plan (what this release writes): version 2 and id_bytes 8; its text and MAC
    are the vector's; a v3 plan with another width, or without one, and a v2 plan naming one
    are refused."""
    from vault import index as I
    v = load("index_plan_v3.json")
    meta = K.Key(K.KIND_META_KEY, "", 1, b(v["meta_kid"]), b(v["meta_key"]))
    assert K.mac_plan(meta, b(v["vault_id"]), v["plan"]) == b(v["blob"])
    schema = vault.load_schema()
    assert I.all_index_names(schema) == v["indexes"]
    plan = I.make_plan(1, schema, v["population"], v["k"], {"contact": 1, "identity": 1})
    assert plan.to_text() == v["plan"] and I.Plan.from_text(v["plan"]) == plan and plan.id_bytes == 8
    for text in v["refused"]:
        with pytest.raises((ValueError, KeyError, TypeError)):
            I.Plan.from_text(text)


def test_reveal_request_signature() -> None:
    from vault import breakglass as B
    v = load("reveal_request_sig_v1.json")
    msg = B.request_message(b(v["vault_id"]), v["req_id"], v["requester_id"], b(v["record_id"]), v["field"],
                            b(v["reason_blob"]))
    assert msg == b(v["signed_message"])
    assert C.Signer(b(v["requester_ed25519_seed"]))(msg) == b(v["sig"])
    C.ed25519_verify(b(v["requester_ed25519_public"]), msg, b(v["sig"]))


def test_labelled_audit_entry() -> None:
    from vault import audit as A
    v = load("audit_entry_v2.json")
    e = A.Entry(v["seq"], b(v["prev"]), v["at"], b(v["actor"]), v["action"], v["target"], v["detail"],
                v["reason"].encode(), b(v["hash"]), b(v["sig"]))
    assert A.entry_hash(*e[:8], labelled=True) == e.hash
    assert A.entry_hash(*e[:8]) == b(v["older_form_hash"])
    assert A.entry_form(e) is True and A.entry_form(e, first=False) is True and A.entry_signed(e, True)
    assert not A.entry_signed(e, False)
    assert C.Signer(b(v["actor_ed25519_seed"]))(A.signed_message(e.hash, True)) == e.sig


def test_generator_reproduces_committed_vectors() -> None:
    """The independent spec implementation in generate.py still agrees with the files."""
    res = subprocess.run([sys.executable, str(VEC / "generate.py"), "--check"], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_format_constants_match_vectors() -> None:
    assert F.FORMAT_VERSION == 1 and F.PAD_BLOCK == 32 and F.NONCE_LEN == 12 and F.KID_LEN == 8
    assert b(load("field_v1.json")["blob"])[:2] == b"\x01F"
    assert b(load("dek_v1.json")["blob"])[:2] == b"\x01D"


def test_reason_note() -> None:
    from vault import notes as N
    v = load("reason_note_v1.json")
    x_sk, blob = b(v["recipient_x25519_secret"]), b(v["blob"])
    x_pk, ed_pk = C.x25519_public(x_sk), C.ed25519_public(b(v["recipient_ed25519_seed"]))
    assert N.recipient_id(x_pk + ed_pk) == b(v["recipient_id"]) == blob[2:10]
    unseal = lambda c: C.unseal(x_sk, c)  # noqa: E731
    assert N.open_note(F.KIND_REASON, blob, unseal) == b(v["body"])
    mine = N.seal_note(F.KIND_REASON, x_pk, b(v["recipient_id"]), b(v["body"]))
    assert mine[:10] == blob[:10] and len(mine) == len(blob)  # sealing is randomised
    assert N.open_note(F.KIND_REASON, mine, unseal) == b(v["body"])
    for bad in (blob[:2] + bytes(8) + blob[10:], blob[:-1], b"\x01G" + blob[2:]):
        with pytest.raises(C.AuthFailure):
            N.open_note(F.KIND_REASON, bad, unseal)


def test_break_glass_grant() -> None:
    from vault import breakglass as B
    v = load("grant_v1.json")
    head, expires, sig, sealed = B._parse_grant(b(v["blob"]))
    assert head == b"\x01G" + b(v["requester_id"]) and expires == v["expires"]
    message = B._grant_message(b(v["vault_id"]), v["req_id"], v["requester_id"], b(v["record_id"]), v["field"],
                               expires, sealed, head)
    assert message == b(v["signed_message"])
    C.ed25519_verify(C.ed25519_public(b(v["lead_ed25519_seed"])), message, sig)
    plain = C.unseal(b(v["requester_x25519_secret"]), sealed)
    assert plain == head + b(v["vault_id"]) + b(v["req_id"]) + b'{"value": "' + v["value"].encode() + b'"}'
    with pytest.raises(C.AuthFailure):
        C.ed25519_verify(C.ed25519_public(b(v["lead_ed25519_seed"])), message.replace(head, b"\x01G" + bytes(8)), sig)


def test_padded_reason_note() -> None:
    """Kind Q (since 2026-11-27): a request's reason, padded as a field value is (format.md 3)."""
    from vault import notes as N
    v = load("reason_padded_v1.json")
    x_sk, blob = b(v["recipient_x25519_secret"]), b(v["blob"])
    unseal = lambda c: C.unseal(x_sk, c)  # noqa: E731
    assert N.open_note_as((F.KIND_REASON_PADDED, F.KIND_REASON), blob, unseal) == (b"Q", b(v["body"]))
    assert E.unpad(b(v["body"])[24:]) == v["reason"].encode()
    x_pk = C.x25519_public(x_sk)
    mine = N.seal_note(F.KIND_REASON_PADDED, x_pk, b(v["recipient_id"]), b(v["body"]))
    assert mine[:10] == blob[:10] and len(mine) == len(blob)
    with pytest.raises(C.AuthFailure):  # the kind is inside the box: Q cannot pass for R
        N.open_note(F.KIND_REASON, b"\x01R" + blob[2:], unseal)


def test_audit_reason() -> None:
    """An audit entry's reason (since 2026-11-27): kind Q, the body the padded reason alone;
    the library reads it as the lead does in audit_entries, and writes the same shape."""
    from vault import audit as A
    from vault import notes as N
    v = load("audit_reason_v1.json")
    x_sk, blob = b(v["recipient_x25519_secret"]), b(v["blob"])
    unseal = lambda c: C.unseal(x_sk, c)  # noqa: E731
    kind, body = N.open_note_as((F.KIND_REASON_PADDED, F.KIND_REASON), blob, unseal)
    assert kind == b"Q" and body == b(v["body"]) and E.unpad(body) == v["reason"].encode()
    auditor = A.Auditor(bytes(64), None, (C.x25519_public(x_sk), b(v["recipient_id"])))
    auditor.reason = v["reason"]
    written: list = []

    class Store:  # just enough of one for a single append
        is_sqlite = True
        in_transaction = False

        def tx(self, write: bool = False):  # type: ignore[no-untyped-def]
            import contextlib
            return contextlib.nullcontext(None)

        def raw(self, conn, sql, params=()):  # type: ignore[no-untyped-def]
            written.append(params)
            from types import SimpleNamespace
            return SimpleNamespace(fetchone=lambda: None)

    auditor.append(Store(), "read", "", {}, unsigned=True)
    mine = written[-1][7]
    assert mine[:10] == blob[:10] and len(mine) == len(blob)
    assert N.open_note_as((F.KIND_REASON_PADDED,), mine, unseal) == (b"Q", b(v["body"]))


def test_padded_break_glass_grant() -> None:
    """Kind V (since 2026-11-27): a grant whose sealed JSON is padded; the library opens it."""
    from types import SimpleNamespace

    from vault import breakglass as B
    v = load("grant_padded_v1.json")
    head, expires, sig, sealed = B._parse_grant(b(v["blob"]))
    assert head == b"\x01V" + b(v["requester_id"]) and expires == v["expires"]
    message = B._grant_message(b(v["vault_id"]), v["req_id"], v["requester_id"], b(v["record_id"]), v["field"],
                               expires, sealed, head)
    assert message == b(v["signed_message"])
    lead_vk = C.ed25519_public(b(v["lead_ed25519_seed"]))
    C.ed25519_verify(lead_vk, message, sig)
    x_sk = b(v["requester_x25519_secret"])
    plain = C.unseal(x_sk, sealed)
    assert plain == head + b(v["vault_id"]) + b(v["req_id"]) + E.pad(b'{"value": "' + v["value"].encode() + b'"}')
    fake = SimpleNamespace(access=SimpleNamespace(lead_vk=lead_vk, ses=SimpleNamespace(
                           user=SimpleNamespace(user_id=v["requester_id"]), vid=b(v["vault_id"]),
                           identity=SimpleNamespace(unseal=lambda c: C.unseal(x_sk, c)),
                           schema=SimpleNamespace(fields={v["field"]: SimpleNamespace(type="text")}))))
    row = SimpleNamespace(grant=b(v["blob"]), requester=v["requester_id"], record_id=b(v["record_id"]),
                          field=v["field"])
    assert B._open_grant(fake, row, v["req_id"], now=v["expires"] - 1) == v["value"]  # type: ignore[arg-type]


def test_identity_file() -> None:
    """Kind U shares the passphrase box with kind P (keys.seal_passphrase_box), bound to nothing."""
    import base64
    from vault.identity import Identity
    v = load("identity_v1.json")
    blob = b(v["blob"])
    params = F.KdfParams(v["t"], v["m_kib"], v["p"])
    ident = Identity.from_file_bytes(base64.b64encode(blob) + b"\n", v["passphrase"])
    assert ident.public.user_id == v["user_id"]
    mine = Identity(b(v["x25519_secret"]), b(v["ed25519_seed"])).to_file_bytes(
        v["passphrase"], params, salt=b(v["salt"]), nonce=b(v["nonce"]))
    assert base64.b64encode(blob) in mine
    with pytest.raises(vault.WrongPassphrase):
        Identity.from_file_bytes(base64.b64encode(blob), v["passphrase"] + "!")


def test_keyring_pin(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from vault import pins as PN
    v = load("keyring_pin_v1.json")
    vid, key = b(v["vault_id"]), b(v["meta_key"])
    assert f"{vid.hex()} {PN.fingerprint(vid, key)}" == v["line"]
    path = tmp_path / "known.vaults"
    path.write_text(v["line"] + "\n")  # a line of the first form still checks
    PN.check(path, vid, key, "ab" * 16, record=False)
    with pytest.raises(vault.IntegrityError):
        PN.check(path, vid, bytes(32), "ab" * 16)


def test_keyring_pin_with_signers(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from vault import pins as PN
    v = load("keyring_pin_v2.json")
    vid, key = b(v["vault_id"]), b(v["meta_key"])
    lead, rec = b(v["lead_ed25519_public"]), b(v["recovery_ed25519_public"])
    assert f"{vid.hex()} {PN.fingerprint(vid, key)} {PN.signers_hash(lead, rec)}" == v["line"]
    assert f"{vid.hex()} {PN.fingerprint(vid, key)} {PN.signers_hash(b'', rec)}" == v["line_without_lead"]
    path = tmp_path / "known.vaults"
    PN.check(path, vid, key, PN.signers_hash(lead, rec))
    assert v["line"] in path.read_text().splitlines()
    with pytest.raises(vault.IntegrityError):
        PN.check(path, vid, key, PN.signers_hash(b"", rec))


@pytest.mark.parametrize("name, width", [("index_rows_v1.json", 16), ("index_rows_v2.json", 8)])
def test_index_rows(name: str, width: int) -> None:
    """format.md 10 "Stored rows": the library's terms for these records, packed as one
    write of a generation whose ids are ``width`` bytes (v1: a version 1 or 2 plan's whole
    ids; v2: a version 3 plan's 8-byte prefixes), are exactly these bucket rows; each row's
    ids read back as the records' (prefixes)."""
    from vault import index as I
    from vault import store as S

    v = load(name)
    assert v.get("id_bytes", 16) == width
    schema = vault.load_schema('[schema]\nname="x"\nversion=1\nclasses=["contact"]\n'
                               '[fields.email]\ntype="text"\nclass="contact"\nsearch="exact"\nnormalize="email"\n')
    ix = I.Indexer(schema, {"contact": b(v["class_key"])}, v["bits"])
    terms = [(v["gen"], name, value, b(r["record_id"])) for r in v["records"]
             for name, value in ix.terms({"email": r["email"]})]
    rows = S.pack_index({k: (ids,) for k, ids in S.group_terms(terms).items()}, {v["gen"]: width})
    assert [(g, n, val, ids.hex()) for g, n, val, _chunk, ids in rows] == \
        [(v["gen"], r["name"], r["value"], r["ids"]) for r in v["rows"]]
    assert all(len(chunk) == 8 for *_k, chunk, _ids in rows)
    for r in v["rows"]:
        assert {i.hex() for i in S.split_ids(b(r["ids"]), width)} == \
            {x["record_id"][:2 * width] for x in v["records"] if ix.terms({"email": x["email"]})[0][1] == r["value"]}
    many = [b(x) for x in v["many"]["ids_in_write_order"]]
    rows = S.pack_index({k: (ids,) for k, ids in S.group_terms((1, "email", 0, rid) for rid in many).items()},
                        {1: width})
    assert [ids.hex() for ids in sorted(ids for *_k, ids in rows)] == v["many"]["rows"]  # row order is the random chunk id's
    cap = {16: 256, 8: 496}[width]  # format.md §10: the most a writer puts in a row
    assert [len(b(x)) // width for x in v["many"]["rows"]] == [cap, len(many) - cap]


def _statement_keys(v: dict) -> tuple[list, list]:
    zero = bytes(8)
    base = [K.Key(K.KIND_META_KEY, "", 1, zero, b(v["meta_key"])),
            K.Key(K.KIND_LEAD_VK, "lead", 1, zero, b(v["lead_ed25519_public"]))]
    classes = [K.Key(K.KIND_CLASS_KEY, c["name"], c["version"], b(c["kid"]), b(c["key"])) for c in v["classes"]]
    return base, classes


def test_key_statement() -> None:
    """format.md 9b: the library writes exactly the generator's text and signature (v3),
    accepts them for a full keyring and for a write-only one, and refuses any other key, a
    lower or higher database version, another user table, another canary list, a v2
    statement from v8 on and a v1 statement from v7 on."""
    from vault.envelope import class_box_secret
    from vault.identity import PublicIdentity
    from vault.users import User, roster_bytes, roster_digest
    v = load("key_statement_v3.json")
    v2 = load("key_statement_v2.json")
    vid = b(v["vault_id"])
    lead = C.Signer(b(v["lead_ed25519_seed"]))
    u = v2["user"]
    user = User(u["user_id"], u["name"], u["role"], PublicIdentity(b(u["x25519_public"]), b(u["ed25519_public"])),
                u["slot_id"])
    assert user.public.user_id == u["user_id"]  # derived as format.md 8a says
    assert roster_bytes(vid, [user]) == b(v["roster_bytes"])
    roster = roster_digest(vid, [user])
    base, classes = _statement_keys(v)
    full = K.Keyring(base + classes)
    stmt, sig, db, listed = v["statement"], b(v["signature"]), v["db_version"], b(v["canary_list"])
    slots = {s["slot_id"]: (s["kind"], hashlib.sha256(b(s["unlock"])).hexdigest()) for s in v["slots"]}
    assert all(digest == s["unlock_sha256"] for (_, digest), s in zip(slots.values(), v["slots"]))
    assert K.key_statement(full, vid, db, roster, slots=slots, canaries=listed) == stmt
    assert K.sign_text("keys", vid, stmt, b"L", lead) == sig
    assert K.check_key_statement(full, vid, stmt, sig, db_version=db, roster=roster, canaries=listed) == db
    assert K.parse_statement(stmt).slots == tuple((sid, kind, digest) for sid, (kind, digest) in sorted(slots.items()))
    for other, what in ((db - 1, "lowered"), (db + 1, "raised")):
        with pytest.raises(vault.IntegrityError, match=what):
            K.check_key_statement(full, vid, stmt, sig, db_version=other, roster=roster, canaries=listed)
    with pytest.raises(vault.IntegrityError, match="user table"):
        K.check_key_statement(full, vid, stmt, sig, db_version=db, roster=roster_digest(vid, []), canaries=listed)
    with pytest.raises(vault.IntegrityError, match="canary list"):
        K.check_key_statement(full, vid, stmt, sig, db_version=db, roster=roster, canaries=listed[:-1] + b"\x00")
    writer = K.Keyring(base + [k if k.name != "identity" else
                               K.Key(K.KIND_CLASS_PUBLIC, k.name, k.version, k.kid, C.x25519_public(class_box_secret(k.secret)))
                               for k in classes])
    K.check_key_statement(writer, vid, stmt, sig, db_version=db, roster=roster, canaries=listed)  # write-only class
    forged = K.Keyring(base + [k if k.name != "identity" else K.Key(K.KIND_CLASS_PUBLIC, k.name, k.version, k.kid,
                                                                      C.x25519_public(bytes(31) + b"\x01"))
                               for k in classes])
    with pytest.raises(vault.IntegrityError, match="class identity"):
        K.check_key_statement(forged, vid, stmt, sig, db_version=db, roster=roster, canaries=listed)
    other_meta = K.Keyring([K.Key(K.KIND_META_KEY, "", 1, bytes(8), bytes(32)), *base[1:], *classes])
    with pytest.raises(vault.IntegrityError, match="meta key"):
        K.check_key_statement(other_meta, vid, stmt, sig, db_version=db, roster=roster, canaries=listed)
    edited = stmt.replace("class risk 3", "class risk 4")
    with pytest.raises(vault.IntegrityError, match="signature"):
        K.check_key_statement(full, vid, edited, sig, db_version=db, roster=roster, canaries=listed)
    head, rest = stmt.split("\nclass ", 1)
    unsorted = head + "\nclass " + "\nclass ".join(reversed(rest.rstrip("\n").split("\nclass "))) + "\n"
    twice = stmt + stmt.rstrip("\n").rsplit("\n", 1)[1] + "\n"
    slot_lines = [ln for ln in stmt.split("\n") if ln.startswith("slot ")]
    for bad in (unsorted, twice, "dvault keys v3\n", stmt + "class x\n", stmt.rstrip("\n"), stmt.replace("db 8", "db 08"),
                stmt.replace("db 8", "db 7"), stmt.replace("\nusers ", "\nusers  "),
                stmt.replace("dvault keys v3", "dvault keys v2"), stmt.replace("\ncanaries ", "\ncanary "),
                stmt.replace(slot_lines[0] + "\n" + slot_lines[1], slot_lines[1] + "\n" + slot_lines[0]),  # unsorted
                stmt.replace(slot_lines[0] + "\n", slot_lines[0] + "\n" + slot_lines[0] + "\n"),  # twice
                stmt.replace(slot_lines[0], "slot " + slot_lines[0].split(" ")[1][:-1] + " " + slot_lines[0].split(" ")[2]),
                stmt.replace(slot_lines[1], slot_lines[1].rsplit(" ", 1)[0] + " other")):
        with pytest.raises(vault.IntegrityError):
            K.check_key_statement(full, vid, bad, K.sign_text("keys", vid, bad, b"L", lead), db_version=db,
                                  roster=roster, canaries=listed)
    # v2 (database schema v7): no canaries and slot lines; accepted at v7 only
    s2, sig2 = v2["statement"], b(v2["signature"])
    assert K.check_key_statement(full, vid, s2, sig2, db_version=7, roster=roster) == 7
    with pytest.raises(vault.IntegrityError, match="raised"):  # a version above the signed one
        K.check_key_statement(full, vid, s2, sig2, db_version=8, roster=roster)
    with pytest.raises(vault.IntegrityError, match="lowered"):
        K.check_key_statement(full, vid, s2, sig2, db_version=6, roster=roster)
    assert K.statement_version(s2.encode()) == 7 and K.statement_version(stmt.encode()) == 8
    # v1 (releases before database schema v7): no db and users lines; accepted below v7 only
    v1 = load("key_statement_v1.json")
    assert K.check_key_statement(full, vid, v1["statement"], b(v1["signature"]), db_version=6, roster=roster) == 0
    with pytest.raises(vault.IntegrityError, match="older than this vault"):
        K.check_key_statement(full, vid, v1["statement"], b(v1["signature"]), db_version=7, roster=roster)
    assert K.statement_version(v1["statement"].encode()) is None


def test_canary_list() -> None:
    """format.md 13a: the library seals exactly the generator's list and reads it back;
    another vault id, another seed (the meta key, say) or a flipped byte is refused."""
    from vault import canaries as CA
    v = load("canary_list_v1.json")
    seed, vid, blob = b(v["recovery_seed"]), b(v["vault_id"]), b(v["blob"])
    listed = {b(c["record_id"]): c["since"] for c in v["canaries"]}
    assert CA.seal_list(seed, vid, listed, nonce=b(v["nonce"])) == blob
    assert CA.open_list(seed, vid, blob) == listed
    assert C.sha256(blob).hex() == v["sha256"]
    for s_, vid_, blob_ in ((seed, bytes(16), blob), (bytes(32), vid, blob), (seed, vid, blob[:-1] + bytes([blob[-1] ^ 1])),
                            (seed, vid, b"\x01D" + blob[2:])):
        with pytest.raises(vault.IntegrityError, match="canary list"):
            CA.open_list(s_, vid_, blob_)
    assert len(blob) == 2 + F.NONCE_LEN + F.CANARY_LIST_BLOCK + F.TAG_LEN


def test_moving_mark() -> None:
    """format.md 12: the mark a move writes into its new vault, signed by the source's signer."""
    from vault import moving
    v = load("moving_mark_v1.json")
    signer = C.Signer(b(v["signer_ed25519_seed"]))
    dest = b(v["destination_vault_id"])
    got = moving.mark(v["source_vault_id"], dest, lambda m: b"L" + signer(m))
    assert got == {"moving": v["moving"].encode(), "moving_sig": b(v["moving_sig"])}


def test_normalize() -> None:
    """The library's normalisers give the spec's outputs (computed by normref.py, a second
    implementation written from format.md §10 alone) on the hard cases."""
    from vault.normalize import normalize, tokens
    doc = load("normalize_v1.json")
    assert len(doc["cases"]) >= 250
    for case in doc["cases"]:
        x = case["input"]
        for kind in ("text", "name", "email", "phone", "compact"):
            assert normalize(kind, x) == case[kind], (kind, x)
        assert tokens(normalize("name", x)) == case["tokens"], x


def _normref():  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(VEC))
    try:
        import normref
    finally:
        sys.path.remove(str(VEC))
    return normref


_NORM_ALPHABET = st.one_of(
    st.characters(codec="utf-8"),  # anything
    st.sampled_from("0123456789()+ -.'`\u00a0\u00ad\u2010\u2013\u2212\u2019\u02bc\u0301\u0308\u0306\u0327"
                    "İıßΣσςЙЁ٤٢۰९ＡＢ０１ﬁ"),
)


@settings(max_examples=400, deadline=None)
@given(st.text(_NORM_ALPHABET, max_size=24))
def test_normalisers_agree_with_the_spec_only_implementation(x: str) -> None:
    from vault.normalize import normalize, tokens
    ref = _normref()
    for kind in ref.KINDS:
        assert normalize(kind, x) == ref.normalize_ref(kind, x), kind
    assert tokens(normalize("name", x)) == ref.tokens_ref(normalize("name", x))


def test_signed_sealed_export() -> None:
    """Kind O (format.md 8d): the library opens the vector's armour, reads its manifest and
    payload, and its own seal of the same inputs signs exactly the vector's body."""
    from vault import exporter as X
    from vault.identity import Identity
    v = load("export_signed_v1.json")
    to = Identity(b(v["recipient_x25519_secret"]), b(v["recipient_ed25519_seed"]))
    ex = Identity(b(v["exporter_x25519_secret"]), b(v["exporter_ed25519_seed"]))
    assert to.public.raw.hex() == v["recipient_public"] and ex.public.raw.hex() == v["exporter_public"]
    assert to.public.user_id == v["recipient_id"]
    opened = X.open_sealed(v["armoured"].encode("ascii"), to)
    assert opened.data == v["payload"].encode() and opened.sender == ex.public
    assert (opened.vault_id, opened.created, opened.purpose, opened.fields, opened.format, opened.rows) == (
        v["vault_id"], 1795000000, "travel", ("pseudonym", "arrival"), "csv", 2)
    C.ed25519_verify(ex.public.ed25519, F.LABEL_EXPORT_SIG + b(v["body"]), b(v["signature"]))
    mine = X.seal(v["payload"].encode(), to.public, ex, vault_id=v["vault_id"], purpose="travel",
                  fields=["pseudonym", "arrival"], fmt="csv", rows=2, now=1795000000)
    import base64
    raw = base64.b64decode(mine.decode().split("\n\n", 1)[1].split(X.ARMOR_END)[0])
    inner = to.unseal(raw[10:])  # sealing is randomised; what is sealed is not
    assert raw[:10] == b(v["body"])[:10] and inner == b(v["body"]) + b(v["signature"])
    assert mine.decode().split("\n\n")[0] == v["armoured"].split("\n\n")[0]


def test_signed_sealed_export_by_another_key_is_refused() -> None:
    from vault import exporter as X
    from vault.identity import Identity
    v = load("export_signed_v1_wrong_signer.json")
    assert v["expect"] == "failure: signature"
    to = Identity(b(v["recipient_x25519_secret"]), b(v["recipient_ed25519_seed"]))
    with pytest.raises(vault.IntegrityError, match="signature does not verify"):
        X.open_sealed(v["armoured"].encode("ascii"), to)


def test_written_files_list(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os

    from vault import local
    vec = load("written_list_v1.json")
    entries = [(e["kind"], os.fsdecode(bytes.fromhex(e["path_hex"]))) for e in vec["entries"]]
    for kind, path in entries:
        local.remember(path, kind, folder=tmp_path)
    assert (tmp_path / local.WRITTEN).read_bytes() == vec["text"].encode("ascii")
    assert [(k, str(p)) for k, p in local.written(tmp_path)] == entries


def test_recovery_shares(real_floor: None) -> None:
    """§8g: the library combines the vector's shares to its master secret, derives the same
    unlock text, opens the kind P slot with it, and signs and verifies the same description."""
    from vault import shares as SH
    v = load("recovery_shares_v1.json")
    vid = b(v["vault_id"])
    for pair in ((0, 1), (1, 2), (0, 2)):
        got = [SH.check_share(v["mnemonics"][i], n, None) for n, i in enumerate(pair, 1)]
        assert SH.combine(got, v["slip39_passphrase"]) == b(v["master_secret"])
    with pytest.raises(vault.BadShare):
        SH.combine([SH.check_share(v["mnemonics"][0], 1, None)])
    assert SH.unlock_text(b(v["master_secret"])) == v["unlock_text"]
    blob = K.seal_passphrase_slot(v["unlock_text"], b(v["slot_secret"]), b(v["slot_kid"]), vid,
                                  F.KdfParams(v["t"], v["m_kib"], v["p"]), salt=b(v["salt"]), nonce=b(v["nonce"]))
    assert blob == b(v["unlock"])
    assert K.open_passphrase_slot(b(v["unlock"]), v["unlock_text"], vid) == b(v["slot_secret"])
    signer = C.Signer(b(v["signer_ed25519_seed"]))
    info = SH.Info(v["slot_kid"], v["identifier"], v["k"], v["n"], 1, False, v["created_ms"],
                   C.sha256(b(v["unlock"])), tuple(v["retired"]))
    assert info.signed(vid, b"L", signer) == b(v["recovery_shares"])
    ring = K.Keyring([K.Key(K.KIND_LEAD_VK, "lead", 1, bytes(8), C.ed25519_public(b(v["signer_ed25519_seed"])))])
    assert SH.verify_info(b(v["recovery_shares"]), ring, vid) == info
    with pytest.raises(vault.IntegrityError):
        SH.verify_info(b(v["recovery_shares"]), ring, bytes(16))  # bound to its vault
    shares = [SH.check_share(m, i, info) for i, m in enumerate(v["mnemonics"][:2], 1)]
    assert [s.identifier for s in shares] == [v["identifier"]] * 2


def test_retention_override() -> None:
    import datetime as dt

    from vault import retention as RT
    v = load("retention_override_v1.json")
    vid, rid = b(v["vault_id"]), b(v["record_id"])
    assert v["meta_name"] == F.RETENTION_META_PREFIX + rid.hex()
    keys = {b"L": b(v["signer_ed25519_public"])}
    got = RT.decode(vid, rid, b(v["value"]), keys)
    assert got.until == dt.date.fromisoformat(v["until"]) and got.override_id == v["override_id"]
    made = RT.encode(vid, rid, b(v["override_id"]), got.until, b"L", C.Signer(b(v["signer_ed25519_seed"])))
    assert made == b(v["value"])
    with pytest.raises(vault.IntegrityError):
        RT.decode(vid, b(v["vault_id"]), b(v["value"]), keys)  # another record's id: refused
