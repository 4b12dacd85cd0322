#!/usr/bin/env python3
"""Regenerate the known-answer vectors in this directory from docs/format.md alone.

This is deliberately a second, independent implementation of the on-disk format: it
imports nothing from ``vault`` and builds every byte with `cryptography` and
`argon2-cffi` directly, following the spec. tests/test_vectors.py checks that the
library produces and accepts exactly these bytes, and that this script reproduces the
committed files. All "random" inputs are SHA-256 of a fixed label, so runs are identical.

    python tests/vectors/generate.py          # rewrite the JSON files
    python tests/vectors/generate.py --check  # exit 1 if they differ
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import struct
import sys
from pathlib import Path

from argon2.low_level import Type, hash_secret_raw
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

HERE = Path(__file__).resolve().parent
VERSION = 1


def det(label: str, n: int) -> bytes:
    """Deterministic stand-in for CSPRNG output."""
    out = b""
    i = 0
    while len(out) < n:
        out += hashlib.sha256(f"dvault-vectors/{label}/{i}".encode()).digest()
        i += 1
    return out[:n]


def lp8(b: bytes) -> bytes:
    return bytes([len(b)]) + b


def pad(pt: bytes) -> bytes:
    return pt + b"\x80" + b"\x00" * (-(len(pt) + 1) % 32)


def field_blob(dek: bytes, dek_id: bytes, vid: bytes, rid: bytes, name: str, pt: bytes, nonce: bytes) -> bytes:
    header = bytes([VERSION]) + b"F" + dek_id
    aad = header + vid + rid + lp8(name.encode())
    return header + nonce + AESGCM(dek).encrypt(nonce, pad(pt), aad)


def manifest(names: list[str]) -> bytes:
    return struct.pack(">H", len(names)) + b"".join(lp8(n.encode()) for n in sorted(names))


def dek_blob(ckey: bytes, ckid: bytes, cver: int, dek_id: bytes, dek: bytes, vid: bytes, rid: bytes,
             cls: str, names: list[str], nonce: bytes) -> bytes:
    header = bytes([VERSION]) + b"D" + ckid + dek_id
    aad = header + vid + rid + lp8(cls.encode()) + struct.pack(">I", cver) + manifest(names)
    return header + nonce + AESGCM(ckey).encrypt(nonce, dek, aad)


def cells(blobs: dict[str, bytes]) -> bytes:
    out = struct.pack(">H", len(blobs))
    for name in sorted(blobs):
        out += lp8(name.encode()) + struct.pack(">I", len(blobs[name])) + blobs[name]
    return out


def record_row(envs: list[tuple[str, bytes, bytes]]) -> bytes:
    out = bytes([len(envs)])
    for cls, dek, cell_bytes in envs:
        out += lp8(cls.encode()) + struct.pack(">H", len(dek)) + dek + struct.pack(">I", len(cell_bytes)) + cell_bytes
    return out


def derived_class(fmt: int, cls: str, names: list[str], vid: bytes, rid: bytes, keys: list, rnd_log: list
                  ) -> tuple[bytes, bytes, bytes, bytes, bytes]:
    """One class of a record of format ``fmt`` (2 or 3) with a kind H key: its class key and
    id (appended to ``keys``), the randomness it takes (to ``rnd_log``), its DEK id, the 18-byte
    key and the DEK derived under the format's label (formats 2 and 3 share the prk)."""
    k, kid = det(f"class-key-{cls}", 32), det(f"class-kid-{cls}", 8)
    keys.append({"class": cls, "version": 1, "kid": h(kid), "key": h(k)})
    unused, did = det(f"v{fmt}-dek-{cls}", 32), det(f"v{fmt}-dek-id-{cls}", 8)
    rnd_log.append(h(unused + did))
    key = bytes([2]) + b"H" + kid + did
    info = (f"dvault/v{fmt}/record-dek".encode() + key + vid + rid + lp8(cls.encode()) + struct.pack(">I", 1)
            + manifest(names))
    dek = hmac256(hkdf(k, b"dvault/v2/record-dek-key"), info + b"\x01")  # Expand: one block
    return k, kid, did, key, dek


def record_v2(vid: bytes, rid: bytes, pt: bytes) -> dict:
    """Record format 2 (docs/format.md 6b): derived DEKs (kind H), numbered cells, derived
    nonces, the check tag of an empty envelope; the same record after a rotation without
    re-encryption (identity's DEK wrapped, kind D); and tampered rows a reader must refuse."""
    fields = ["badge_name", "legal_name", "organisation", "risk_notes"]  # schema order: numbers 1..4
    number = {n: i + 1 for i, n in enumerate(fields)}
    classes = [("public", {"badge_name": "Amira".encode()}),
               ("identity", {"legal_name": pt, "organisation": b"Free Press"}), ("risk", {})]
    keys, rnd_log, envs, deks = [], [], [], {}
    for cls, values in classes:
        k, kid, did, key, dek = derived_class(2, cls, list(values), vid, rid, keys, rnd_log)
        deks[cls] = (dek, did, k, kid)
        body = bytes([len(values)])
        for name in sorted(values, key=number.__getitem__):
            fno = number[name]
            ct = AESGCM(dek).encrypt(bytes(11) + bytes([fno]), pad(values[name]),
                                     b"\x02F" + did + vid + rid + bytes([fno]) + lp8(name.encode()))
            body += bytes([fno, (len(ct) - 16) // 32]) + ct
        if not values:
            body += AESGCM(dek).encrypt(b"\xff" * 12, b"", b"\x02C" + did + vid + rid)
        envs.append((key, body))
    row = b"\x00\x02" + b"".join(k + c for k, c in envs)
    # the same record after a rotation without re-encryption: identity's DEK wrapped (kind D)
    dek, did, _, _ = deks["identity"]
    k2, kid2 = det("class-key-identity-v2", 32), det("class-kid-identity-v2", 8)
    wrapped = dek_blob(k2, kid2, 2, did, dek, vid, rid, "identity", ["legal_name", "organisation"],
                       det("v2-rewrap-nonce", 12))
    rotated = b"\x00\x02" + envs[0][0] + envs[0][1] + wrapped + envs[1][1] + envs[2][0] + envs[2][1]
    pub, ident, risk = envs
    first = ident[1][1:]  # cells of identity: legal_name (2), then organisation (3)
    size1 = 2 + (first[1] * 32 + 16)
    c1, c2 = first[:size1], first[size1:]
    swapped = bytes([c2[0]]) + c1[1:], bytes([c1[0]]) + c2[1:]  # field numbers exchanged
    tampered = {
        "field numbers of two cells exchanged": ident[1][:1] + swapped[1] + swapped[0],
        "a cell dropped (count lowered)": bytes([1]) + c1,
        "the first cell dropped": bytes([1]) + c2,
    }
    bad = [{"why": why, "row": h(b"\x00\x02" + pub[0] + pub[1] + ident[0] + body + risk[0] + risk[1])}
           for why, body in tampered.items()]
    bad.append({"why": "truncated frame (last byte cut)", "row": h(row[:-1])})
    bad.append({"why": "envelopes of two classes exchanged", "row": h(b"\x00\x02" + ident[0] + ident[1] + pub[0]
                                                                     + pub[1] + risk[0] + risk[1])})
    bad.append({"why": "empty envelope's check tag flipped", "row": h(row[:-1] + bytes([row[-1] ^ 1]))})
    return {
        "expect": "success",
        "description": "record format 2 (format.md 6b): randomness per class = DEK(32, unused by kind H)||DEK id(8); "
                       "row_rotated: identity's DEK wrapped under class key version 2 (kind D); "
                       "tampered: rows a reader must refuse",
        "vault_id": h(vid), "record_id": h(rid), "fields": fields, "class_keys": keys,
        "rotated_key": {"class": "identity", "version": 2, "kid": h(kid2), "key": h(k2)},
        "values": {cls: {n: h(v) for n, v in vals.items()} for cls, vals in classes},
        "randomness": rnd_log, "row": h(row), "row_rotated": h(rotated), "tampered": bad,
    }


def record_v3(vid: bytes, rid: bytes, pt: bytes) -> dict:
    """Record format 3 (docs/format.md 6c): format 2's frame and derived DEKs (under the v3
    label), one AES-GCM ciphertext per class over its padded cells, nonce zero, the framing in
    its associated data; the same record after a rotation without re-encryption (identity's
    DEK wrapped, kind D); and tampered rows a reader must refuse, each with what refuses it:
    the frame (§6b's parse) or the tag (an edit the frame allows, which only the AAD binds)."""
    # schema order gives the numbers 1..5; nationality (identity) is absent from the record,
    # so a cell can be renumbered to it and keep the frame valid
    field_classes = {"badge_name": "public", "legal_name": "identity", "organisation": "identity",
                     "risk_notes": "risk", "nationality": "identity"}
    fields = list(field_classes)
    number = {n: i + 1 for i, n in enumerate(fields)}
    org = b"Free Press Network of the Levant and North Africa"  # two blocks: one can be moved
    classes = [("public", {"badge_name": "Amira".encode()}),
               ("identity", {"legal_name": pt, "organisation": org}), ("risk", {})]
    keys, rnd_log, envs, deks = [], [], [], {}
    for cls, values in classes:
        _k, _kid, did, key, dek = derived_class(3, cls, list(values), vid, rid, keys, rnd_log)
        deks[cls] = dek
        order = sorted(values, key=number.__getitem__)
        padded = [pad(values[n]) for n in order]
        aad = b"\x03J" + did + vid + rid + bytes([len(order)]) + b"".join(
            bytes([number[n]]) + lp8(n.encode()) + struct.pack(">I", len(p) // 32) for n, p in zip(order, padded))
        ct = AESGCM(dek).encrypt(bytes(12), b"".join(padded), aad)
        body, off = bytes([len(order)]), 0
        for n, p in zip(order, padded):
            body += bytes([number[n], len(p) // 32]) + ct[off:off + len(p)]
            off += len(p)
        envs.append((key, body + ct[off:]))
    row = b"\x00\x03" + b"".join(k + c for k, c in envs)
    did = envs[1][0][10:18]
    k2, kid2 = det("class-key-identity-v2", 32), det("class-kid-identity-v2", 8)
    wrapped = dek_blob(k2, kid2, 2, did, deks["identity"], vid, rid, "identity", ["legal_name", "organisation"],
                       det("v3-rewrap-nonce", 12))
    rotated = b"\x00\x03" + envs[0][0] + envs[0][1] + wrapped + envs[1][1] + envs[2][0] + envs[2][1]
    pub, ident, risk = envs
    body = ident[1]
    b1 = body[2]  # legal_name's blocks; organisation's are two
    c1, c2 = body[1:3 + 32 * b1], body[3 + 32 * b1:-16]
    moved = bytes([2, c1[0], b1 + 1]) + c1[2:] + c2[2:34] + bytes([c2[0], 1]) + c2[34:] + body[-16:]
    assert c2[1] == 2 and len(moved) == len(body)
    assert c2[0] == number["organisation"] < number["nationality"]
    tampered = {  # why -> (the identity envelope's cells and tag, what refuses it)
        "field numbers of two cells exchanged (no longer ascending)":
            (bytes([2, c2[0]]) + c1[1:] + bytes([c1[0]]) + c2[1:] + body[-16:], "frame"),
        "a cell renumbered to an absent field of its class (organisation 3 -> nationality 5)":
            (bytes([2]) + c1 + bytes([number["nationality"]]) + c2[1:] + body[-16:], "tag"),
        "a block moved from one cell to the other (sizes edited, bytes kept)": (moved, "tag"),
        "a cell dropped (count lowered)": (bytes([1]) + c1 + body[-16:], "tag"),
        "the tag flipped": (body[:-1] + bytes([body[-1] ^ 1]), "tag"),
    }
    bad = [{"why": why, "fails_on": on, "row": h(b"\x00\x03" + pub[0] + pub[1] + ident[0] + b + risk[0] + risk[1])}
           for why, (b, on) in tampered.items()]
    bad.append({"why": "truncated frame (last byte cut)", "fails_on": "frame", "row": h(row[:-1])})
    bad.append({"why": "envelopes of two classes exchanged", "fails_on": "frame",
                "row": h(b"\x00\x03" + ident[0] + ident[1] + pub[0] + pub[1] + risk[0] + risk[1])})
    bad.append({"why": "empty envelope's tag flipped", "fails_on": "tag", "row": h(row[:-1] + bytes([row[-1] ^ 1]))})
    bad.append({"why": "the row relabelled as format 2", "fails_on": "frame", "row": h(b"\x00\x02" + row[2:])})
    return {
        "expect": "success",
        "description": "record format 3 (format.md 6c): randomness per class = DEK(32, unused by kind H)||DEK id(8); "
                       "row_rotated: identity's DEK wrapped under class key version 2 (kind D); "
                       "tampered: rows a reader must refuse, fails_on: what refuses each (frame: the parse of 6b, "
                       "before any key is used; tag: the envelope's AEAD tag)",
        "vault_id": h(vid), "record_id": h(rid), "fields": fields, "field_classes": field_classes,
        "class_keys": keys,
        "rotated_key": {"class": "identity", "version": 2, "kid": h(kid2), "key": h(k2)},
        "values": {cls: {n: h(v) for n, v in vals.items()} for cls, vals in classes},
        "randomness": rnd_log, "row": h(row), "row_rotated": h(rotated), "tampered": bad,
    }


def envelope_bodies(row: bytes, classes: list[str]) -> list[tuple[str, bytes, bytes]]:
    """(class, DEK id, body) of each envelope of a row, in schema order (format.md 13a, the
    second kind of record states): the DEK id is bytes 10..18 of the envelope's key (format 1:
    of its DEK blob); the body every byte of the envelope after its key (formats 2 and 3: the
    count byte through the last cell and the tag; format 1: its cells container, without the
    container's u32 length). Framing only, by §6, §6b and §6c."""
    out: dict[str, tuple[bytes, bytes]] = {}
    if row[:2] in (b"\x00\x02", b"\x00\x03"):
        joint, pos = row[1] == 3, 2
        for cls in classes:
            klen = {b"\x02H": 18, b"\x01D": 78, b"\x01W": 202}[row[pos:pos + 2]]
            key, pos = row[pos:pos + klen], pos + klen
            start, count = pos, row[pos]
            pos += 1
            for _ in range(count):
                blocks = row[pos + 1]
                pos += 2
                if blocks == 0:
                    (blocks,) = struct.unpack(">I", row[pos:pos + 4])
                    pos += 4
                pos += 32 * blocks + (0 if joint else 16)
            pos += 16 if joint or count == 0 else 0
            out[cls] = (key[10:18], row[start:pos])
    else:
        pos = 1
        for _ in range(row[0]):
            cls = row[pos + 1:pos + 1 + row[pos]].decode("ascii")
            pos += 1 + row[pos]
            (dl,) = struct.unpack(">H", row[pos:pos + 2])
            dek = row[pos + 2:pos + 2 + dl]
            pos += 2 + dl
            (cl,) = struct.unpack(">I", row[pos:pos + 4])
            out[cls] = (dek[10:18], row[pos + 4:pos + 4 + cl])
            pos += 4 + cl
    assert pos == len(row) and list(out) == classes
    return [(c, *out[c]) for c in classes]


def b64url(raw: bytes) -> str:
    """base64url without padding (format.md 13a: a token of the second kind)."""
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def record_state_v2(meta_key: bytes, vid: bytes, rid: bytes, classes: list[str],
                    rows: list[tuple[str, bytes]]) -> dict:
    """Record states of the second kind (format.md 13a, database schema version 9 on): one
    part per class over the envelope's DEK id and bytes, the token over the parts."""
    key = hkdf(meta_key, b"dvault/v2/record-state")
    tag = b64url(hmac256(key, b"rec" + vid + rid)[:12])
    cases = []
    for source, row in rows:
        envs = envelope_bodies(row, classes)
        parts = [hmac256(key, b"part" + vid + rid + lp8(c.encode("ascii")) + did + body)[:16]
                 for c, did, body in envs]
        cases.append({"source": source, "row": h(row), "dek_ids": {c: h(did) for c, did, _ in envs},
                      "parts": {c: h(p) for (c, _, _), p in zip(envs, parts)},
                      "token": tag + b64url(hmac256(key, b"row" + vid + b"".join(parts))[:24])})
    return {
        "expect": "success",
        "description": "record states of the second kind: state_key = HKDF-SHA256(meta key, "
                       "\"dvault/v2/record-state\"); part(c) = HMAC-SHA256(state_key, \"part\" || vault_id || "
                       "record_id || u8 len(c) || c || dek_id || body)[0:16], body = every byte of the envelope "
                       "after its key (format 1: the cells container without its u32 length); token = "
                       "BASE64URL(record tag || HMAC-SHA256(state_key, \"row\" || vault_id || parts in schema order)[0:24]), "
                       "record tag = HMAC-SHA256(state_key, \"rec\" || vault_id || record_id)[0:12]. A rewrap keeps "
                       "the DEK id and the body, so row_rotated has the same parts and token as row",
        "meta_key": h(meta_key), "vault_id": h(vid), "record_id": h(rid), "classes": classes,
        "state_key": h(key), "record_tag": tag, "cases": cases,
    }


def keyring_plain(keys: list[tuple[int, str, int, bytes, bytes]]) -> bytes:
    out = struct.pack(">H", len(keys))
    for kind, name, version, kid, key in keys:
        out += bytes([kind]) + lp8(name.encode()) + struct.pack(">I", version) + kid + key
    return out


def h(b: bytes) -> str:
    return b.hex()


def hkdf(key: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(key)


def hmac256(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()


CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def gf32_times2(x: int) -> int:
    x <<= 1
    return x ^ 0b100101 if x & 0b100000 else x  # reduce by x^5 + x^2 + 1


def spell(value: int, prefix: str) -> str:
    """Crockford base32, 10 characters, plus Damm check over x*y = 2x + y in GF(32)."""
    digits = [(value >> (5 * (9 - i))) & 31 for i in range(10)]
    interim = 0
    for d in digits:
        interim = gf32_times2(interim) ^ d
    body = "".join(CROCKFORD[d] for d in digits) + CROCKFORD[gf32_times2(interim)]
    return f"{prefix}-{body[0:4]}-{body[4:8]}-{body[8:11]}"


def build() -> dict[str, dict]:
    files: dict[str, dict] = {}
    vid, rid = det("vault-id", 16), det("record-id", 16)

    # -- padding ---------------------------------------------------------------------------
    files["padding.json"] = {
        "expect": "success",
        "description": "ISO/IEC 7816-4 padding to a multiple of 32 bytes",
        "cases": [{"plaintext": h(b"a" * n), "padded": h(pad(b"a" * n))} for n in (0, 1, 30, 31, 32, 33, 64)],
    }

    # -- a list value (§3): u16 count, then u16 length + UTF-8 per item ---------------------
    def list_value(items: list[str]) -> bytes:
        return len(items).to_bytes(2, "big") + b"".join(
            len(i.encode()).to_bytes(2, "big") + i.encode() for i in items)
    files["value_list_v1.json"] = {
        "expect": "success",
        "description": "list value encoding (§3), then padded as any value; the last case is a free-text item",
        "cases": [{"items": items, "encoded": h(list_value(items)), "padded": h(pad(list_value(items)))}
                  for items in ([], ["halal"], ["halal", "nut_allergy"], ["vegan", "Sin mariscos (alergia) — ñ"])],
        "invalid": [h(b""), h(b"\x00"), h(b"\x00\x01\x00\x05hal"), h(list_value(["a"]) + b"x"),
                    h(list_value(["a", "a"])), h(b"\x00\x01\x00\x01\xff")],
    }

    # -- one field -------------------------------------------------------------------------
    dek, dek_id, nonce = det("dek", 32), det("dek-id", 8), det("field-nonce", 12)
    pt = "Amira Haddad — أميرة".encode()
    blob = field_blob(dek, dek_id, vid, rid, "legal_name", pt, nonce)
    base = {"dek": h(dek), "dek_id": h(dek_id), "vault_id": h(vid), "record_id": h(rid),
            "field": "legal_name", "nonce": h(nonce), "plaintext": h(pt)}
    files["field_v1.json"] = {"expect": "success", "description": "field ciphertext, kind F", **base, "blob": h(blob)}
    bad = bytearray(blob)
    bad[-1] ^= 1
    files["field_v1_bad_tag.json"] = {"expect": "auth_failure", "description": "last tag bit flipped",
                                      **base, "blob": h(bytes(bad))}
    files["field_v1_wrong_field.json"] = {"expect": "auth_failure",
                                          "description": "valid blob of legal_name presented as organisation",
                                          **{**base, "field": "organisation"}, "blob": h(blob)}

    # -- one wrapped DEK -------------------------------------------------------------------
    ckey, ckid, wnonce = det("class-key-identity", 32), det("class-kid-identity", 8), det("dek-nonce", 12)
    names = ["legal_name", "organisation"]
    dblob = dek_blob(ckey, ckid, 1, dek_id, dek, vid, rid, "identity", names, wnonce)
    dbase = {"class_key": h(ckey), "class_kid": h(ckid), "class_version": 1, "dek_id": h(dek_id), "dek": h(dek),
             "vault_id": h(vid), "record_id": h(rid), "class": "identity", "fields_present": names,
             "nonce": h(wnonce)}
    files["dek_v1.json"] = {"expect": "success", "description": "wrapped DEK, kind D", **dbase, "blob": h(dblob)}
    files["dek_v1_wrong_manifest.json"] = {"expect": "auth_failure",
                                           "description": "same blob, one field dropped from the envelope",
                                           **{**dbase, "fields_present": ["legal_name"]}, "blob": h(dblob)}

    # -- a whole record row (two classes, one empty) ---------------------------------------
    classes = [("public", {"badge_name": "Amira".encode()}), ("identity", {"legal_name": pt, "organisation": b"Free Press"}),
               ("risk", {})]
    envs, rnd_log, keys = [], [], []
    for cls, values in classes:
        k, kid = det(f"class-key-{cls}", 32), det(f"class-kid-{cls}", 8)
        keys.append({"class": cls, "version": 1, "kid": h(kid), "key": h(k)})
        d, did, wn = det(f"row-dek-{cls}", 32), det(f"row-dek-id-{cls}", 8), det(f"row-wrap-nonce-{cls}", 12)
        rnd = d + did + wn
        fblobs = {}
        for name in sorted(values):
            n = det(f"row-nonce-{cls}-{name}", 12)
            rnd += n
            fblobs[name] = field_blob(d, did, vid, rid, name, values[name], n)
        envs.append((cls, dek_blob(k, kid, 1, did, d, vid, rid, cls, list(values), wn), cells(fblobs)))
        rnd_log.append(h(rnd))
    files["record_v1.json"] = {
        "expect": "success",
        "description": "a record row: framed class envelopes; randomness per class = DEK||DEK id||wrap nonce||field nonces (sorted by field)",
        "vault_id": h(vid), "record_id": h(rid), "class_keys": keys,
        "values": {cls: {n: h(v) for n, v in vals.items()} for cls, vals in classes},
        "randomness": rnd_log, "row": h(record_row(envs)),
    }
    record_envs = list(envs)
    files["record_v2.json"] = record_v2(vid, rid, pt)
    files["record_v3.json"] = record_v3(vid, rid, pt)

    # -- a DEK sealed to a class's public key (kind E), by a writer without the class key ------
    # crypto_box_seal made deterministic by fixing the ephemeral key: nonce = BLAKE2b-192(epk || pk).
    from nacl.bindings import crypto_box, crypto_scalarmult_base
    box_sk = hkdf(ckey, b"dvault/v1/class-box")
    box_pk = crypto_scalarmult_base(box_sk)
    esk = det("ephemeral-x25519", 32)
    epk = crypto_scalarmult_base(esk)
    sheader = bytes([VERSION]) + b"E" + ckid + dek_id
    context = hashlib.sha256(sheader + vid + rid + lp8(b"identity") + struct.pack(">I", 1) + manifest(names)).digest()
    nonce24 = hashlib.blake2b(epk + box_pk, digest_size=24).digest()
    sealed_dek = sheader + epk + crypto_box(dek + context, nonce24, box_pk, esk)
    files["sealed_dek_v1.json"] = {
        "expect": "success",
        "description": "kind E: DEK || SHA-256(D-style AAD with this header) sealed to X25519(HKDF(class key, class-box))",
        "class_key": h(ckey), "class_kid": h(ckid), "class_version": 1, "dek_id": h(dek_id), "dek": h(dek),
        "vault_id": h(vid), "record_id": h(rid), "class": "identity", "fields_present": names,
        "class_box_public": h(box_pk), "blob": h(sealed_dek),
    }

    # -- sealed notes: a reason (kind R) and a break-glass grant (kind G), format.md 8b --------
    from nacl.bindings import crypto_sign, crypto_sign_seed_keypair

    def sealed_box(pk: bytes, label: str, plaintext: bytes) -> bytes:
        e_sk = det(label, 32)
        e_pk = crypto_scalarmult_base(e_sk)
        return e_pk + crypto_box(plaintext, hashlib.blake2b(e_pk + pk, digest_size=24).digest(), pk, e_sk)

    def person(label: str) -> tuple[bytes, bytes, bytes, bytes]:
        """(x25519 secret, x25519 public, ed25519 seed, user id)."""
        x_sk, seed = det(f"{label}-x25519", 32), det(f"{label}-ed25519", 32)
        x_pk, ed_pk = crypto_scalarmult_base(x_sk), crypto_sign_seed_keypair(seed)[0]
        return x_sk, x_pk, seed, hashlib.sha256(b"dvault-user-id" + x_pk + ed_pk).digest()[:8]

    lead_x, lead_pk, lead_seed, lead_id = person("lead")
    req_x, req_pk, _, req_id_user = person("requester")
    req_id = det("request-id", 8)
    rhead = bytes([VERSION]) + b"R" + lead_id
    body = vid + req_id + "Hospital admission for the participant".encode()
    reason_blob = rhead + sealed_box(lead_pk, "ephemeral-reason", rhead + body)
    files["reason_note_v1.json"] = {
        "expect": "success",
        "description": "kind R: header || sealed_box(lead, header || vault_id || req_id || UTF-8 reason) (dv_reveals)",
        "recipient_x25519_secret": h(lead_x), "recipient_ed25519_seed": h(lead_seed), "recipient_id": h(lead_id),
        "body": h(body), "blob": h(reason_blob),
    }
    expires = 1_795_000_000
    def grant(kind: bytes, ephemeral: str, payload: bytes, description: str) -> dict:
        """A break-glass grant of ``kind`` (G, or V with the JSON padded), as format.md 8b."""
        head = bytes([VERSION]) + kind + req_id_user
        sealed = sealed_box(req_pk, ephemeral, head + vid + req_id + payload)
        message = (b"dvault/v1/break-glass" + head + vid + req_id + req_id_user + rid + b"legal_name" + b"\x00"
                   + struct.pack(">Q", expires) + sealed)
        sig = crypto_sign(message, crypto_sign_seed_keypair(lead_seed)[1])[:64]
        return {
            "expect": "success", "description": description,
            "lead_ed25519_seed": h(lead_seed), "requester_x25519_secret": h(req_x), "requester_id": h(req_id_user),
            "vault_id": h(vid), "req_id": h(req_id), "record_id": h(rid), "field": "legal_name", "expires": expires,
            "value": "Amira Haddad", "signed_message": h(message),
            "blob": h(head + struct.pack(">Q", expires) + sig + sealed),
        }

    files["grant_v1.json"] = grant(
        b"G", "ephemeral-grant", b'{"value": "Amira Haddad"}',
        "kind G: header || u64 expires || Ed25519(lead, label || header || vault_id || req_id || "
        "requester id || record_id || field || 0x00 || u64 expires || sealed) || sealed")

    # -- the padded forms (since 2026-11-27): reason kind Q, grant kind V, format.md 8b -------
    qhead = bytes([VERSION]) + b"Q" + lead_id
    qbody = vid + req_id + pad("Hospital admission for the participant".encode())
    files["reason_padded_v1.json"] = {
        "expect": "success",
        "description": "kind Q: header || sealed_box(lead, header || vault_id || req_id || pad(UTF-8 reason)) "
                       "(dv_reveals)",
        "recipient_x25519_secret": h(lead_x), "recipient_ed25519_seed": h(lead_seed), "recipient_id": h(lead_id),
        "reason": "Hospital admission for the participant", "body": h(qbody),
        "blob": h(qhead + sealed_box(lead_pk, "ephemeral-reason-padded", qhead + qbody)),
    }
    abody = pad("Visa letter for the embassy".encode())
    files["audit_reason_v1.json"] = {
        "expect": "success",
        "description": "dv_audit.reason since 2026-11-27: kind Q, header || sealed_box(lead, header || "
                       "pad(UTF-8 reason)) (no vault or request id in the body, unlike dv_reveals)",
        "recipient_x25519_secret": h(lead_x), "recipient_id": h(lead_id),
        "reason": "Visa letter for the embassy", "body": h(abody),
        "blob": h(qhead + sealed_box(lead_pk, "ephemeral-audit-reason", qhead + abody)),
    }
    files["grant_padded_v1.json"] = grant(
        b"V", "ephemeral-grant-padded", pad(b'{"value": "Amira Haddad"}'),
        "kind V: as kind G, the sealed JSON padded: sealed_box(requester, header || vault_id || req_id || pad(JSON))")

    # -- a requester's signature over a break-glass request (database schema v8), format.md 8b --
    req_seed = det("requester-ed25519", 32)
    qreason = qhead + sealed_box(lead_pk, "ephemeral-reason-padded", qhead + qbody)
    rmessage = (b"dvault/v1/reveal-request" + vid + req_id + req_id_user + rid + lp8(b"legal_name")
                + hashlib.sha256(qreason).digest())
    files["reveal_request_sig_v1.json"] = {
        "expect": "success",
        "description": "dv_reveals.sig: Ed25519(requester, label || vault_id || req_id || requester id || record_id "
                       "|| lp8(field) || SHA-256(dv_reveals.reason))",
        "requester_ed25519_seed": h(req_seed), "requester_ed25519_public": h(crypto_sign_seed_keypair(req_seed)[0]),
        "vault_id": h(vid), "req_id": h(req_id), "requester_id": h(req_id_user), "record_id": h(rid),
        "field": "legal_name", "reason_blob": h(qreason), "signed_message": h(rmessage),
        "sig": h(crypto_sign(rmessage, crypto_sign_seed_keypair(req_seed)[1])[:64]),
    }

    # -- an audit entry of the labelled form (database schema v8), format.md 13a ---------------
    a_seed = det("audit-actor-ed25519", 32)
    a_actor = det("audit-actor-x25519-public", 32) + crypto_sign_seed_keypair(a_seed)[0]
    a_prev, a_detail = det("audit-prev", 32), '{"fields":["email"]}'
    a_body = (struct.pack(">QQ", 42, 1_795_000_000_000) + a_prev + a_actor + lp8(b"read") + lp8(b"AU-W018-S760-ZZE")
              + struct.pack(">I", len(a_detail)) + a_detail.encode() + struct.pack(">I", 0))
    a_hash = hashlib.sha256(b"dvault/v1/log-entry" + a_body).digest()
    files["audit_entry_v2.json"] = {
        "expect": "success",
        "description": "dv_audit entry of the labelled form: hash = SHA-256(\"dvault/v1/log-entry\" || u64 seq || u64 at "
                       "|| prev || actor || lp8(action) || lp8(target) || u32 len || detail || u32 len || reason), "
                       "sig = Ed25519(actor, \"dvault/v1/audit-sig\" || hash); older_form_hash: the same entry hashed "
                       "as releases before it did (label \"dvault/v1/audit\", signature over the bare hash)",
        "seq": 42, "at": 1_795_000_000_000, "prev": h(a_prev), "actor": h(a_actor), "actor_ed25519_seed": h(a_seed),
        "action": "read", "target": "AU-W018-S760-ZZE", "detail": a_detail, "reason": "",
        "hash": h(a_hash), "sig": h(crypto_sign(b"dvault/v1/audit-sig" + a_hash,
                                                crypto_sign_seed_keypair(a_seed)[1])[:64]),
        "older_form_hash": h(hashlib.sha256(b"dvault/v1/audit" + a_body).digest()),
    }

    # -- a sealed DEK signed by its writer (kind W, since database schema v5), format.md 5a ----
    w_x, w_pk, w_seed, w_id = person("writer")
    wheader = bytes([VERSION]) + b"W" + ckid + dek_id + w_id
    wcontext = hashlib.sha256(wheader + vid + rid + lp8(b"identity") + struct.pack(">I", 1) + manifest(names)).digest()
    wbox = sealed_box(box_pk, "ephemeral-writer", dek + wcontext)
    wmessage = b"dvault/v1/sealed-dek-sig" + wheader + wbox + wcontext
    wsig = crypto_sign(wmessage, crypto_sign_seed_keypair(w_seed)[1])[:64]
    files["sealed_dek_signed_v1.json"] = {
        "expect": "success",
        "description": "kind W: header(version, W, class kid, dek id, writer id) || sealed_box(class box public, "
                       "DEK || context) || Ed25519(writer, label || header || box || context)",
        "class_key": h(ckey), "class_kid": h(ckid), "class_version": 1, "dek_id": h(dek_id), "dek": h(dek),
        "vault_id": h(vid), "record_id": h(rid), "class": "identity", "fields_present": names,
        "writer_id": h(w_id), "writer_ed25519_seed": h(w_seed),
        "writer_ed25519_public": h(crypto_sign_seed_keypair(w_seed)[0]), "context": h(wcontext),
        "signed_message": h(wmessage), "blob": h(wheader + wbox + wsig),
    }

    # -- a signed sealed export (kind O), format.md 8d ---------------------------------------
    import base64
    ex_x, ex_pk, ex_seed, _ex_id = person("exporter")
    to_x, to_pk, to_seed, to_id = person("travel-agent")
    ex_raw = ex_pk + crypto_sign_seed_keypair(ex_seed)[0]
    to_raw = to_pk + crypto_sign_seed_keypair(to_seed)[0]
    payload = '"pseudonym","arrival"\r\n"TR-7KQ4-M2XP-9AW","2026-11-20"\r\n"TR-0C1D-22EF-3GH","\'=1+1"\r\n'.encode()
    xmanifest = json.dumps({"created": 1795000000, "fields": ["pseudonym", "arrival"], "format": "csv",
                            "purpose": "travel", "recipient": h(to_raw), "rows": 2, "sender": h(ex_raw),
                            "vault": h(vid)}, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    xheader = bytes([VERSION]) + b"O" + to_id
    xbody = xheader + struct.pack(">I", len(xmanifest)) + xmanifest + payload
    xsig = crypto_sign(b"dvault/v1/export-sig" + xbody, crypto_sign_seed_keypair(ex_seed)[1])[:64]
    xblob = xheader + sealed_box(to_pk, "ephemeral-export", xbody + xsig)
    armoured = ("-----BEGIN DVAULT SEALED EXPORT-----\nrecipient: " + h(to_id) + "\n\n"
                + base64.encodebytes(xblob).decode() + "-----END DVAULT SEALED EXPORT-----\n")
    files["export_signed_v1.json"] = {
        "expect": "success",
        "description": "kind O: armour(header || sealed_box(recipient, body || Ed25519(exporter, label || body))), "
                       "body = header || u32 len(manifest) || manifest (canonical JSON) || payload",
        "exporter_ed25519_seed": h(ex_seed), "exporter_x25519_secret": h(ex_x), "exporter_public": h(ex_raw),
        "recipient_x25519_secret": h(to_x), "recipient_ed25519_seed": h(to_seed), "recipient_public": h(to_raw),
        "recipient_id": h(to_id), "vault_id": h(vid), "manifest": xmanifest.decode(), "payload": payload.decode(),
        "body": h(xbody), "signature": h(xsig), "armoured": armoured,
    }
    other_seed = det("not-the-exporter-ed25519", 32)
    fsig = crypto_sign(b"dvault/v1/export-sig" + xbody, crypto_sign_seed_keypair(other_seed)[1])[:64]
    fblob = xheader + sealed_box(to_pk, "ephemeral-export-forged", xbody + fsig)
    files["export_signed_v1_wrong_signer.json"] = {
        "expect": "failure: signature",
        "description": "kind O whose manifest names the exporter but whose signature is by another key (what a "
                       "forger who knows only public lines can make): refused",
        "recipient_x25519_secret": h(to_x), "recipient_ed25519_seed": h(to_seed),
        "armoured": ("-----BEGIN DVAULT SEALED EXPORT-----\nrecipient: " + h(to_id) + "\n\n"
                     + base64.encodebytes(fblob).decode() + "-----END DVAULT SEALED EXPORT-----\n"),
    }

    # -- keyring and passphrase slot -------------------------------------------------------
    secret, skid, knonce = det("slot-secret", 32), det("slot-kid", 8), det("keyring-nonce", 12)
    ring = [(2, "", 1, det("meta-kid", 8), det("meta-key", 32))] + [
        (1, c, 1, det(f"class-kid-{c}", 8), det(f"class-key-{c}", 32)) for c in ("public", "identity")] + [
        (3, "badge", 1, det("purpose-kid-badge", 8), det("purpose-key-badge", 32))]
    kheader = bytes([VERSION]) + b"K" + skid
    kblob = kheader + knonce + AESGCM(secret).encrypt(knonce, keyring_plain(ring), kheader + vid)
    files["keyring_v1.json"] = {
        "expect": "success", "description": "keyring blob, kind K",
        "slot_secret": h(secret), "slot_kid": h(skid), "vault_id": h(vid), "nonce": h(knonce),
        "keys": [{"kind": k, "name": n, "version": v, "kid": h(i), "key": h(s)} for k, n, v, i, s in ring],
        "plaintext": h(keyring_plain(ring)), "blob": h(kblob),
    }
    passphrase = "correct horse battery staple ünïcode"
    salt, pnonce = det("slot-salt", 16), det("slot-nonce", 12)
    t, m, p = 3, 65536, 4
    kek = hash_secret_raw(passphrase.encode(), salt, t, m, p, 32, Type.ID, 19)
    pheader = bytes([VERSION]) + b"P" + skid + struct.pack(">III", t, m, p) + salt
    body = pheader + pnonce + AESGCM(kek).encrypt(pnonce, secret, pheader + vid)
    pblob = body + hashlib.sha256(body + vid).digest()[:8]
    files["passphrase_slot_v1.json"] = {
        "expect": "success", "description": "passphrase slot, kind P (Argon2id t=3 m=64MiB p=4)",
        "passphrase": passphrase, "salt": h(salt), "t": t, "m_kib": m, "p": p, "kek": h(kek),
        "slot_secret": h(secret), "slot_kid": h(skid), "vault_id": h(vid), "nonce": h(pnonce), "blob": h(pblob),
    }
    files["passphrase_slot_v1_wrong.json"] = {
        **files["passphrase_slot_v1.json"], "passphrase": "correct horse battery stapler",
        "expect": "wrong_passphrase", "description": "same slot, another passphrase",
    }

    # -- identity file (kind U): the passphrase-slot layout, bound to nothing (format.md 8a) --
    id_x, id_seed = det("identity-x25519", 32), det("identity-ed25519", 32)
    id_raw = crypto_scalarmult_base(id_x) + crypto_sign_seed_keypair(id_seed)[0]
    uid = hashlib.sha256(b"dvault-user-id" + id_raw).digest()[:8]
    isalt, inonce = det("identity-salt", 16), det("identity-nonce", 12)
    ikek = hash_secret_raw(passphrase.encode(), isalt, t, m, p, 32, Type.ID, 19)
    iheader = bytes([VERSION]) + b"U" + uid + struct.pack(">III", t, m, p) + isalt
    ibody = iheader + inonce + AESGCM(ikek).encrypt(inonce, id_x + id_seed, iheader)
    files["identity_v1.json"] = {
        "expect": "success",
        "description": "identity file blob (the base64 line), kind U: AAD = header, checksum = SHA-256(body)[0:8]",
        "passphrase": passphrase, "x25519_secret": h(id_x), "ed25519_seed": h(id_seed), "user_id": h(uid),
        "salt": h(isalt), "nonce": h(inonce), "t": t, "m_kib": m, "p": p,
        "blob": h(ibody + hashlib.sha256(ibody).digest()[:8]),
    }

    # -- schema MAC --------------------------------------------------------------------------
    meta_kid, meta_key = ring[0][3], ring[0][4]

    def meta_mac(kind: bytes, label: bytes, name: str, text: str, description: str) -> dict:
        """A text MAC'd under the meta key: kind byte, label, SHA-256 of the text (format.md)."""
        header = bytes([VERSION]) + kind + meta_kid
        mac = hmac.new(meta_key, label + header + vid + hashlib.sha256(text.encode()).digest(), hashlib.sha256)
        return {"expect": "success", "description": description, "meta_kid": h(meta_kid), "meta_key": h(meta_key),
                "vault_id": h(vid), name: text, "blob": h(header + mac.digest())}

    schema = '[schema]\nname = "mini"\nversion = 1\nclasses = ["public"]\n\n[fields.badge_name]\ntype = "text"\nclass = "public"\n'
    files["schema_mac_v1.json"] = meta_mac(b"S", b"dvault/v1/schema-mac", "schema", schema, "schema MAC blob, kind S")
    # -- a client's pin of a vault (known-vaults file, format.md 8c) ---------------------------
    pin = hmac.new(meta_key, b"dvault/v1/keyring-pin" + vid, hashlib.sha256).digest()[:16]
    files["keyring_pin_v1.json"] = {
        "expect": "success", "description": "known-vaults line: hex(vault_id) SP hex(HMAC-SHA256(meta key, label || vault_id)[0:16])",
        "meta_key": h(meta_key), "vault_id": h(vid), "line": f"{h(vid)} {h(pin)}",
    }
    # -- a record row's state as the audit log names it (format.md 13a "Record states") ------
    state_key = hkdf(meta_key, b"dvault/v1/record-state")
    row_dek_ids = b"".join(dek[10:18] for _, dek, _ in record_envs)
    files["record_state_v1.json"] = {
        "expect": "success",
        "description": "hex(HMAC-SHA256(HKDF(meta key, record-state), vault_id || record_id || DEK ids in row order)[0:12]) "
                       "of record_v1.json's row",
        "meta_key": h(meta_key), "vault_id": h(vid), "record_id": h(rid), "row": h(record_row(record_envs)),
        "dek_ids": h(row_dek_ids), "token": hmac256(state_key, vid + rid + row_dek_ids)[:12].hex(),
    }
    # -- the same rows' states of the second kind (format.md 13a, database schema v9 on) -------
    files["record_state_v2.json"] = record_state_v2(meta_key, vid, rid, ["public", "identity", "risk"], [
        ("record_v1.json row", record_row(record_envs)),
        *[(f"record_v{n}.json {k}", bytes.fromhex(files[f"record_v{n}.json"][k]))
          for n in (2, 3) for k in ("row", "row_rotated")]])
    # -- the signed key statement (format.md 9b) ----------------------------------------------
    classes = {name: (det(f"statement-{name}-key", 32), det(f"statement-{name}-kid", 8), ver)
               for name, ver in (("risk", 3), ("contact", 1), ("identity", 2))}
    lines = ["dvault keys v1", f"meta {h(pin)}"]
    for name in sorted(classes):
        key, kid, ver = classes[name]
        lines.append(f"class {name} {ver} {h(kid)} {h(crypto_scalarmult_base(hkdf(key, b'dvault/v1/class-box')))}")
    statement = "\n".join(lines) + "\n"
    signer_seed = det("statement-lead-ed25519", 32)
    signer_pk, signer_sk = crypto_sign_seed_keypair(signer_seed)
    signed = b"dvault/v1/keys-sig" + vid + hashlib.sha256(statement.encode("ascii")).digest()
    rec_vk = crypto_sign_seed_keypair(det("statement-recovery-ed25519", 32))[0]
    signers = hashlib.sha256(b"dvault/v1/pin-signers" + bytes([len(signer_pk)]) + signer_pk
                             + bytes([len(rec_vk)]) + rec_vk).digest()[:16]
    no_lead = hashlib.sha256(b"dvault/v1/pin-signers" + bytes([0]) + bytes([len(rec_vk)]) + rec_vk).digest()[:16]
    files["keyring_pin_v2.json"] = {
        "expect": "success",
        "description": "known-vaults line with signers: hex(vault_id) SP pin SP hex(SHA-256(label || "
                       "u8 len || lead Ed25519 || u8 len || recovery Ed25519)[0:16]); no lead: length 0",
        "meta_key": h(meta_key), "vault_id": h(vid), "lead_ed25519_public": h(signer_pk),
        "recovery_ed25519_public": h(rec_vk), "line": f"{h(vid)} {h(pin)} {h(signers)}",
        "line_without_lead": f"{h(vid)} {h(pin)} {h(no_lead)}",
    }
    # (a SQLite path is the file's real path: these paths hold no symbolic link)
    places = [("sqlite:////srv/dv/wörk dir/dd 2026.vault", "sqlite:/srv/dv/wörk dir/dd 2026.vault"),
              ("sqlite:////srv/dv/old/../dd 2026.vault", "sqlite:/srv/dv/dd 2026.vault"),
              ("postgresql+psycopg://sam:secret@DB.Example.org:5432/ev?options=-csearch_path%3Dev&sslmode=require",
               "postgresql://@db.example.org:5432/ev?options=-csearch_path=ev"),
              ("postgresql://owner@db.example.org/ev?options=-c%20search_path%3Dev&application_name=x",
               "postgresql://@db.example.org:5432/ev?options=-csearch_path=ev"),
              ("postgresql://sam@127.0.0.1/ev", "postgresql://sam@localhost:5432/ev?"),
              ("postgresql://sam@/ev?host=/var/run/postgresql", "postgresql://sam@localhost:5432/ev?host=/var/run/postgresql"),
              ("postgresql://db/ev", "postgresql://@db:5432/ev?")]
    files["pin_location_v1.json"] = {
        "expect": "success",
        "description": "known-vaults location lines: location text (format.md 8c) and "
                       "place = hex(SHA-256('dvault/v1/pin-location' || UTF-8(text))[0:16])",
        "cases": [{"url": url, "text": text,
                   "place": hashlib.sha256(b"dvault/v1/pin-location" + text.encode()).digest()[:16].hex()}
                  for url, text in places],
    }
    written = [("identity", b"/home/sam/.local/share/defenders-vault/identity.dvid"),
               ("vault", b"/home/sam/desk.vault"), ("export", b"/home/sam/pick ups\nday 2.csv"),
               ("export", b"/home/sam/caf\xe9.csv")]
    files["written_list_v1.json"] = {
        "expect": "success",
        "description": "the written-files list (format.md 8f): its header line, then KIND SP hex(path bytes) LF, "
                       "one line per file, in the order written",
        "entries": [{"kind": k, "path_hex": p.hex()} for k, p in written],
        "text": "# defenders-vault: files dvault wrote, for dvault travel and panic (paths only, hex)\n"
                + "".join(f"{k} {p.hex()}\n" for k, p in written),
    }
    files["key_statement_v1.json"] = {
        "expect": "success",
        "description": "ASCII lines: header, meta pin, class NAME VERSION kid X25519(HKDF(class key, class-box)) "
                       "sorted by name; sig = who || Ed25519(label || vault_id || SHA-256(text))",
        "vault_id": h(vid), "meta_key": h(meta_key),
        "classes": [{"name": n, "version": v, "kid": h(k), "key": h(key)} for n, (key, k, v) in sorted(classes.items())],
        "lead_ed25519_seed": h(signer_seed), "lead_ed25519_public": h(signer_pk),
        "statement": statement, "signature": h(b"L" + crypto_sign(signed, signer_sk)[:64]),
    }
    # v2 (database schema v7 on): the version and the user table's digest after the meta line
    user_x = crypto_scalarmult_base(det("statement-user-x25519-secret", 32))
    user_id = hashlib.sha256(b"dvault-user-id" + user_x + signer_pk).digest()[:8].hex()
    slot_id = det("statement-user-slot", 8).hex()
    roster = b"dvault/v1/roster" + vid + (1).to_bytes(4, "big") + b"".join(
        bytes([len(x)]) + x for x in (user_id.encode(), "Amira Haddad".encode(), b"lead")) \
        + user_x + signer_pk + bytes([len(slot_id)]) + slot_id.encode()
    lines2 = ["dvault keys v2", lines[1], "db 7", f"users {h(hashlib.sha256(roster).digest())}"] + lines[2:]
    statement2 = "\n".join(lines2) + "\n"
    signed2 = b"dvault/v1/keys-sig" + vid + hashlib.sha256(statement2.encode("ascii")).digest()
    files["key_statement_v2.json"] = {
        "expect": "success",
        "description": "ASCII lines: header, meta pin, db VERSION, users hex(SHA-256(roster bytes, format.md 8a)), "
                       "class lines as in v1; sig = who || Ed25519(label || vault_id || SHA-256(text))",
        "vault_id": h(vid), "meta_key": h(meta_key),
        "classes": [{"name": n, "version": v, "kid": h(k), "key": h(key)} for n, (key, k, v) in sorted(classes.items())],
        "lead_ed25519_seed": h(signer_seed), "lead_ed25519_public": h(signer_pk),
        "db_version": 7, "roster_bytes": h(roster),
        "user": {"user_id": user_id, "name": "Amira Haddad", "role": "lead", "x25519_public": h(user_x),
                 "ed25519_public": h(signer_pk), "slot_id": slot_id},
        "statement": statement2, "signature": h(b"L" + crypto_sign(signed2, signer_sk)[:64]),
    }
    # -- the canary list (format.md 13a, database schema v8 on) ---------------------------------
    seed = det("canary-recovery-seed", 32)
    canaries = sorted([(det("canary-record-b", 16), 41), (det("canary-record-a", 16), 7)])
    plain = struct.pack(">I", len(canaries)) + b"".join(rid + struct.pack(">Q", since) for rid, since in canaries)
    padded = plain + b"\x80" + b"\x00" * (-(len(plain) + 1) % 4096)
    list_nonce = det("canary-list-nonce", 12)
    list_header = bytes([VERSION]) + b"C"
    list_blob = list_header + list_nonce + AESGCM(hkdf(seed, b"dvault/v1/canary-list")).encrypt(
        list_nonce, padded, list_header + vid)
    files["canary_list_v1.json"] = {
        "expect": "success",
        "description": "dv_meta.canaries: 0x01 'C' || nonce || AES-256-GCM(HKDF(recovery seed, canary-list), nonce, "
                       "pad4096(u32 n || (record_id || u64 planting seq)* sorted by id), aad = header || vault_id)",
        "recovery_seed": h(seed), "vault_id": h(vid), "nonce": h(list_nonce),
        "canaries": [{"record_id": h(rid), "since": since} for rid, since in canaries],
        "blob": h(list_blob), "sha256": hashlib.sha256(list_blob).hexdigest(),
    }
    # v3 (database schema v8 on): the canary list's SHA-256 and every slot that must exist
    pass_slot = det("statement-passphrase-slot", 8).hex()
    unlocks = {slot_id: det("statement-user-slot-unlock", 106), pass_slot: det("statement-passphrase-unlock", 106)}
    slot_lines = sorted([(slot_id, "x25519"), (pass_slot, "passphrase")])
    lines3 = ["dvault keys v3", lines[1], "db 8", lines2[3], f"canaries {hashlib.sha256(list_blob).hexdigest()}"] \
        + [f"slot {sid} {kind} {hashlib.sha256(unlocks[sid]).hexdigest()}" for sid, kind in slot_lines] + lines[2:]
    statement3 = "\n".join(lines3) + "\n"
    signed3 = b"dvault/v1/keys-sig" + vid + hashlib.sha256(statement3.encode("ascii")).digest()
    files["key_statement_v3.json"] = {
        "expect": "success",
        "description": "ASCII lines: header, meta pin, db VERSION, users (as v2), canaries hex(SHA-256(dv_meta.canaries)), "
                       "slot ID KIND hex(SHA-256(dv_slots.unlock)) sorted by id, class lines as in v1; "
                       "sig = who || Ed25519(label || vault_id || SHA-256(text))",
        "vault_id": h(vid), "meta_key": h(meta_key),
        "classes": [{"name": n, "version": v, "kid": h(k), "key": h(key)} for n, (key, k, v) in sorted(classes.items())],
        "lead_ed25519_seed": h(signer_seed), "lead_ed25519_public": h(signer_pk),
        "db_version": 8, "roster_bytes": h(roster), "canary_list": h(list_blob),
        "slots": [{"slot_id": sid, "kind": kind, "unlock": h(unlocks[sid]),
                   "unlock_sha256": hashlib.sha256(unlocks[sid]).hexdigest()} for sid, kind in slot_lines],
        "statement": statement3, "signature": h(b"L" + crypto_sign(signed3, signer_sk)[:64]),
    }
    # the moving mark of a move's new vault (format.md 12)
    dest = det("moving-destination-vault", 16)
    moved_msg = b"dvault/v1/moving-sig" + dest + vid
    files["moving_mark_v1.json"] = {
        "expect": "success",
        "description": "dv_meta.moving = hex(source vault id); moving_sig = who || Ed25519(signer, 'dvault/v1/moving-sig' "
                       "|| destination vault_id || source vault_id), signer: the source's lead (L) or recovery actor (R)",
        "source_vault_id": h(vid), "destination_vault_id": h(dest), "signer_ed25519_seed": h(signer_seed),
        "signer_ed25519_public": h(signer_pk), "moving": h(vid),
        "moving_sig": h(b"L" + crypto_sign(moved_msg, signer_sk)[:64]),
    }
    # -- recovery shares (format.md 8g): SLIP-39 shares, their key slot and its description --
    files["recovery_shares_v1.json"] = recovery_shares_vector(vid, secret, signer_seed, signer_sk)
    # a record's retention override (format.md 9d): dv_meta "retain:" || hex(record id)
    t_rid, t_oid = det("retention-record-id", 16), det("retention-override-id", 16)
    t_body = b"\x01T" + t_oid + b"2028-06-30"
    t_msg = b"dvault/v1/retention-sig" + vid + t_rid + t_body
    files["retention_override_v1.json"] = {
        "expect": "success",
        "description": "dv_meta retain:<hex record id> = 0x01 || 'T' || override id (16) || 'YYYY-MM-DD' || who "
                       "|| Ed25519(signer, 'dvault/v1/retention-sig' || vault_id || record_id || the first 28 bytes), "
                       "signer: the lead (L) or the recovery actor (R)",
        "vault_id": h(vid), "record_id": h(t_rid), "override_id": h(t_oid), "until": "2028-06-30",
        "signer_ed25519_seed": h(signer_seed), "signer_ed25519_public": h(signer_pk),
        "meta_name": "retain:" + t_rid.hex(), "signed_message": h(t_msg),
        "value": h(t_body + b"L" + crypto_sign(t_msg, signer_sk)[:64]),
    }
    # -- blind index -------------------------------------------------------------------------
    ckey = det("class-key-identity", 32)
    cases = []
    for field, kind, normalised, bits in [("legal_name", "exact", "jurgen muller", 5),
                                          ("legal_name", "token", "muller", 5),
                                          ("email", "exact", "amira@example.org", 14),
                                          ("passport_number", "exact", "P83526008", 17),
                                          ("email", "exact", "amira@example.org", 0)]:
        ikey = hkdf(ckey, b"dvault/v1/blind-index" + lp8(field.encode()) + lp8(kind.encode()))
        digest = hmac256(ikey, normalised.encode())
        value = int.from_bytes(digest[:4], "big") >> (32 - bits) if bits else 0
        cases.append({"field": field, "kind": kind, "normalised": normalised, "bits": bits,
                      "index_key": h(ikey), "value": value})
    files["blind_index_v1.json"] = {
        "expect": "success",
        "description": "index key = HKDF-SHA256(class key, label || lp8(field) || lp8(kind)); "
                       "value = first 4 bytes of HMAC-SHA256(index key, normalised UTF-8) >> (32 - bits)",
        "class_key": h(ckey), "cases": cases,
    }

    # -- blind-index rows (format.md 10, "Stored rows") ----------------------------------------
    rkey = det("index-rows-class-key", 32)
    ekey = hkdf(rkey, b"dvault/v1/blind-index" + lp8(b"email") + lp8(b"exact"))
    people = [(det(f"index-rows-record-{i}", 16), f"p{i % 3}@example.org") for i in range(7)]
    buckets: dict[int, set[bytes]] = {}
    for rid_i, email in people:
        buckets.setdefault(int.from_bytes(hmac256(ekey, email.encode())[:4], "big") >> (32 - 2), set()).add(rid_i)
    many = [det(f"index-rows-many-{i}", 16) for i in range(300)]
    ordered = sorted(many)
    files["index_rows_v1.json"] = {
        "expect": "success",
        "description": "dv_index rows of one write: per (gen, name, value) bucket the distinct record ids, "
                       "ascending, concatenated, at most 256 to a row (the 8-byte chunk id is random and not pinned)",
        "class_key": h(rkey), "gen": 1, "bits": 2,
        "records": [{"record_id": h(r), "email": e} for r, e in people],
        "rows": [{"name": "email", "value": v, "ids": h(b"".join(sorted(ids)))} for v, ids in sorted(buckets.items())],
        "many": {"description": "300 ids written at once into one bucket (bits 0, value 0)",
                 "ids_in_write_order": [h(x) for x in many],
                 "rows": [h(b"".join(ordered[:256])), h(b"".join(ordered[256:]))]},
    }

    # -- pseudonym ---------------------------------------------------------------------------
    pkey, pkid, rnonce = det("purpose-key-badge", 32), det("purpose-kid-badge", 8), det("pseudonym-ref-nonce", 12)
    prf_key = hkdf(pkey, b"dvault/v1/pseudonym")
    tag_key = hkdf(pkey, b"dvault/v1/pseudonym-tag")
    ref_key = hkdf(pkey, b"dvault/v1/pseudonym-ref")
    value = int.from_bytes(hmac256(prf_key, rid)[:8], "big") >> 14
    tag = hmac256(tag_key, struct.pack(">Q", value))[:16]
    rheader = bytes([VERSION]) + b"N" + pkid
    ref = rheader + rnonce + AESGCM(ref_key).encrypt(rnonce, rid, rheader + lp8(b"badge") + tag)
    files["pseudonym_v1.json"] = {
        "expect": "success",
        "description": "badge pseudonym of a record: value, spelling (prefix BA), lookup tag and ref blob (kind N)",
        "purpose": "badge", "purpose_key": h(pkey), "purpose_kid": h(pkid), "record_id": h(rid),
        "value": value, "pseudonym": spell(value, "BA"), "tag": h(tag), "nonce": h(rnonce), "ref": h(ref),
    }

    # -- index plan MAC ------------------------------------------------------------------------
    plan = '{"bits":5,"class_versions":{"identity":1,"public":1},"gen":1,"k":4,"population":150}'
    files["index_plan_mac_v1.json"] = meta_mac(b"I", b"dvault/v1/index-plan-mac", "plan", plan,
                                               "index plan MAC blob, kind I")
    # a version 2 plan: the joint allocation of the participant schema's indexes for 150
    # people, k 4 (format.md §10: budget 5; round robin, exact indexes cost 1, token ones 2)
    plan2 = ('{"bits":{"email":1,"legal_name":1,"legal_name#tokens":0,"passport_number":1,"phone":1,"source_id":1},'
             '"class_versions":{"contact":1,"identity":1},"gen":1,"k":4,"mode":"joint","population":150,"v":2}')
    files["index_plan_v2.json"] = {
        **meta_mac(b"I", b"dvault/v1/index-plan-mac", "plan", plan2, "index plan of version 2 (joint) and its MAC "
                   "blob, kind I; indexes: the exact indexes of the participant schema in schema order, then the "
                   "token index"),
        "indexes": ["email", "phone", "legal_name", "passport_number", "source_id", "legal_name#tokens"],
        "population": 150,
        "k": 4}
    # version 3: version 2 and the width of the record-id prefixes its generation's rows store
    plan3 = plan2.replace('"gen":1,', '"gen":1,"id_bytes":8,').replace('"v":2}', '"v":3}')
    files["index_plan_v3.json"] = {
        **meta_mac(b"I", b"dvault/v1/index-plan-mac", "plan", plan3, "index plan of version 3 (version 2 and "
                   "id_bytes 8: its generation's dv_index rows store 8-byte record-id prefixes) and its MAC blob, "
                   "kind I"),
        "indexes": ["email", "phone", "legal_name", "passport_number", "source_id", "legal_name#tokens"],
        "population": 150,
        "k": 4,
        "refused": [plan3.replace('"id_bytes":8', '"id_bytes":16'), plan3.replace('"id_bytes":8', '"id_bytes":4'),
                    plan3.replace('"id_bytes":8,', ''), plan2.replace('"gen":1,', '"gen":1,"id_bytes":8,')]}
    files["index_rows_v2.json"] = index_rows_v2()
    files["normalize_v1.json"] = normalize_vectors()
    files.update(backup_vectors(vid))
    return files


NORMALIZE_INPUTS = [  # hard cases for the normalisers (§10), from a spec-only review
 # Latin accented
 "José", "JOSÉ", "Jose\u0301", "Müller", "MÜLLER", "Mu\u0308ller", "Françoise", "Ångström", "Øyvind", "ØRJAN",
 "Łukasz", "ŁÓDŹ", "Æsir", "ÆTHELRED", "æ", "Đorđe", "ĐORĐE", "Þórr", "þorn", "Straße", "STRASSE", "ß", "ẞ",
 "Ðað", "Œuvre", "ﬁnance", "ﬀ", "ﬃ", "Ĳssel", "ǅ", "Ǆ", "ŉ", "ſ", "K\u212a", "Å", "Å",
 # Greek
 "Ελληνικά", "ΆΈΉΊΌΎΏ", "ΐΰ", "Σωκράτης", "ΟΔΥΣΣΕΥΣ", "σοφός", "ς", "Σ", "ΣΑΣ ΣΑΣ", "ϐϑϕϖ", "ΐ", "ᾼ", "ᾳ", "Ὀδυσσεύς",
 # Cyrillic
 "Йошкар-Ола", "ЙОГУРТ", "Ёлка", "ёж", "Ї", "Ў", "Ќ", "й", "и\u0306", "ЁЁ",
 # Turkish
 "İstanbul", "ISTANBUL", "ıİiI", "İ", "ı", "I\u0307",
 # Vietnamese
 "Nguyễn", "Trần Thị Ánh", "Phạm Ngọc Thạch", "Đặng", "ỆỖỰ", "Ư\u031b", "e\u0302\u0301",
 # Arabic
 "محمد", "أحمد", "إبراهيم", "مُحَمَّد", "ؤ ئ ء", "ٱ", "ﷲ", "ﻻ", "عَبْدُ ٱللَّٰه",
 # Devanagari
 "हिन्दी", "क़", "क\u093c", "ज़िन्दगी", "नमस्ते", "ऩ", "क्ष",
 # Thai, CJK, Hangul
 "ภาษาไทย", "กำ", "ก\u0e4d\u0e32", "日本語", "中文 名字", "한국어", "한", "\u1100\u1161", "ｶﾀｶﾅ", "ガ", "カ\u3099",
 # fullwidth
 "ＡＢＣ１２３", "Ｊｏｈｎ　Ｓｍｉｔｈ", "０１２３", "＋４４", "ｊｏｈｎ＠ｅｘａｍｐｌｅ．ｃｏｍ",
 # whitespace
 "a\u00a0b", "a\u3000b", "a\tb\nc", "  lead trail  ", "a\u2028b", "a\u2029b", "a\x1cb\x1fc", "a\u200bb", "a\u180eb",
 "\u00a0\u00a0", "", " ", "\t\n\r\x0b\x0c", "a\u0085b", "a\u202fb", "a\u205fb", "a\u2007b", "a\ufeffb",
 # soft hyphen, dashes, minus, apostrophes
 "Ma\u00adria", "\u00ad", "Jean\u2010Paul", "Jean\u2011Paul", "Jean\u2012Paul", "Jean\u2013Paul", "Jean\u2014Paul",
 "Jean\u2015Paul", "Jean\u2212Paul", "O\u2018Brien", "O\u2019Brien", "O\u02bcBrien", "O`Brien", "O'Brien", "D\uff07Arcy",
 "a\ufe63b", "a\uff0db", "a\u2e3ab", "a\u2053b", "a\u058ab", "a\u301cb", "a\u2032b", "a\u00b4b", "a\u02b9b",
 "- - -", "--a--", "a - b", "a.b.", "j. r. r. tolkien", "J.R.R.", "van der Berg", "jean-jean jean",
 # emails
 "John.Smith@Example.COM", "  ÜSER@bücher.de ", "用户@例子.广告", "İnfo@TÜRK.com", "ΣΟΦΙΑ@ΕΛ.gr", "user+tag@ｅｘ.com",
 "Ǳ@x", "ß@STRASSE.de", "\u00a0a@b\u3000",
 # phones
 "+44 (0)20 7946 0958", "0044 20 7946 0958", "0044 (0)20 7946 0958", "00 (0)20 1234", "(0)0 44 20", "(0)044 20",
 "+1 (555) 123-4567", "(555) 123-4567", "+33 (0)1 23 45 67 89", "01 23 45 67 89", "+49 (0)30 123456", "030/123456",
 "+81-3-1234-5678", "+86 10 1234 5678", "+91 98765 43210", "+7 (495) 123-45-67", "8 (495) 123-45-67",
 "+٤٤ ٢٠ ٧٩٤٦", "٠٠٤٤ ٢٠", "۰۰۹۸ ۲۱", "+९१ ९८७६५", "๐๘๑", "１２３－４５６", "+1 800 FLOWERS", "555-1234 x123",
 "555-1234 ext. 99", "", "+", "++", "(0)", "(0)(0)", "((0))", "(00)", "+(0)", "+44(0)(0)20", "+1234(0)5",
 "+123(0)45", "+12(0)(0)3", "0(0)44", "T", "tel:+44-20", "+ 44 0 20", "0 0 44", "(0) (0) 44", "+(0)44", "x+1",
 "1+2", "𝟘𝟘𝟜𝟜", "①②③", "⑴⑵", "²³", "00", "0", "000", "0000(0)1",
 # passports / compact
 "AB 123.456-7", "ab-12.34 56", "X\u2010Y\u2011Z\u2012", "A\u2212B", "p\u00adq", "ﬁ-12", "ß12", "Straße 1", "ǆ-1",
 "ı-1", "ŉ", "ΐ.1", "a\u3000b.c", "Ａ－１．２", "№ 123", "ℕ", "Ⅻ", "㎏", "µ", "ﬅ", "ꭰ", "Ꭰ", "ᏸ",
 # combining-only
 "\u0301", "\u0301\u0308", "\u0301abc", "\u0308\u0301 x", "\u0670", "\u093c", "\u0e31", " \u0301", "\u0301 \u0301",
 "1\u0301", "-\u0301", "'\u0301", "a\u0301\u0327", "\u0345", "\u0344", "\u0f73", "\u0f77", "ᾀ", "\u1dc0a",
 # controls / unassigned / PUA / surrogate-free odd
 "a\u0000b", "\u0378", "\ue000\u0301", "\ufffe", "\U0001F600\u0301", "\U0001D400", "𝐀𝐁", "Ａ\u0301",
]


def index_rows_v2() -> dict:
    """dv_index rows of one write under a version 3 plan (format.md §10 "Stored rows"): the
    records and buckets of index_rows_v1.json, each id stored as its first 8 bytes."""
    rkey = det("index-rows-class-key", 32)
    ekey = hkdf(rkey, b"dvault/v1/blind-index" + lp8(b"email") + lp8(b"exact"))
    people = [(det(f"index-rows-record-{i}", 16), f"p{i % 3}@example.org") for i in range(7)]
    buckets: dict[int, set[bytes]] = {}
    for rid_i, email in people:
        buckets.setdefault(int.from_bytes(hmac256(ekey, email.encode())[:4], "big") >> (32 - 2), set()).add(rid_i[:8])
    many = [det(f"index-rows-many-{i}", 16) for i in range(556)]
    ordered = sorted(x[:8] for x in many)
    return {
        "expect": "success",
        "description": "dv_index rows of one write, plan version 3 (id_bytes 8): per (gen, name, value) bucket the "
                       "distinct 8-byte prefixes of the record ids, ascending, concatenated, at most 496 "
                       "prefixes to a row (the 8-byte chunk id is random and not pinned)",
        "class_key": h(rkey), "gen": 1, "bits": 2, "id_bytes": 8,
        "records": [{"record_id": h(r), "email": e} for r, e in people],
        "rows": [{"name": "email", "value": v, "ids": h(b"".join(sorted(ids)))} for v, ids in sorted(buckets.items())],
        "many": {"description": "556 ids written at once into one bucket (bits 0, value 0)",
                 "ids_in_write_order": [h(x) for x in many],
                 "rows": [h(b"".join(ordered[:496])), h(b"".join(ordered[496:]))]},
    }


def recovery_shares_vector(vid: bytes, slot_secret: bytes, signer_seed: bytes, signer_sk: bytes) -> dict:
    """§8g. The shares come from SLIP-39's reference implementation (the spec of the
    shares is SLIP-0039 itself), its randomness replaced by det() for a fixed output."""
    from nacl.bindings import crypto_sign
    import shamir_mnemonic.shamir as slip39
    master, identifier, k, n = det("shares-master-secret", 32), 0x1234, 2, 3
    calls = iter(range(10_000))
    saved = slip39.RANDOM_BYTES
    slip39.RANDOM_BYTES = lambda size: det(f"shares-random-{next(calls)}", size)
    try:
        ems = slip39.EncryptedMasterSecret.from_master_secret(master, b"", identifier, False, 1)
        mnemonics = [s.mnemonic() for s in slip39.split_ems(1, [(k, n)], ems)[0]]
    finally:
        slip39.RANDOM_BYTES = saved
    unlock_text = "dvault-shares:" + hkdf(master, b"dvault/v1/recovery-shares-unlock").hex()
    kid, salt, nonce = det("shares-slot-kid", 8), det("shares-slot-salt", 16), det("shares-slot-nonce", 12)
    t, m, p = 3, 65536, 4
    kek = hash_secret_raw(unlock_text.encode(), salt, t, m, p, 32, Type.ID, 19)
    header = bytes([VERSION]) + b"P" + kid + struct.pack(">III", t, m, p) + salt
    body = header + nonce + AESGCM(kek).encrypt(nonce, slot_secret, header + vid)
    unlock = body + hashlib.sha256(body + vid).digest()[:8]
    created, retired = 1796083200000, [0x0BCD]
    desc = (bytes([VERSION]) + b"H" + kid + struct.pack(">HBBBBQ", identifier, k, n, 1, 0, created)
            + hashlib.sha256(unlock).digest() + bytes([len(retired)]) + b"".join(struct.pack(">H", r) for r in retired))
    sig = crypto_sign(b"dvault/v1/recovery-shares-sig" + vid + desc, signer_sk)[:64]
    return {
        "expect": "success",
        "description": "SLIP-39 2-of-3 shares of a 32-byte master secret (set id 0x1234, not extendable, iteration "
                       "exponent 1, no passphrase); unlock text = 'dvault-shares:' || hex(HKDF-SHA256(master, "
                       "'dvault/v1/recovery-shares-unlock')); the key slot is a kind P slot with that text as its "
                       "passphrase; dv_meta.recovery_shares = description || who || Ed25519(signer, "
                       "'dvault/v1/recovery-shares-sig' || vault_id || description)",
        "vault_id": h(vid), "mnemonics": mnemonics, "slip39_passphrase": "", "master_secret": h(master),
        "identifier": identifier, "k": k, "n": n, "unlock_text": unlock_text, "slot_kid": h(kid), "salt": h(salt),
        "t": t, "m_kib": m, "p": p, "nonce": h(nonce), "slot_secret": h(slot_secret), "unlock": h(unlock),
        "created_ms": created, "retired": retired, "signer_ed25519_seed": h(signer_seed),
        "recovery_shares": h(desc + b"L" + sig),
    }


def _backup_value(x: object) -> bytes:
    """format.md 16: one value of a backup row (tag, then the integer or a u32 length)."""
    if x is None:
        return b"\x00"
    if isinstance(x, int):
        return b"\x01" + struct.pack(">q", x)
    if isinstance(x, str):
        e = x.encode("utf-8")
        return b"\x02" + struct.pack(">I", len(e)) + e
    assert isinstance(x, bytes)
    return b"\x03" + struct.pack(">I", len(x)) + x


def backup_vectors(vid: bytes) -> dict[str, dict]:
    """format.md 16 (backup file) and 16a (shred ledger entry and ledger file)."""
    from nacl.bindings import crypto_scalarmult_base, crypto_sign, crypto_sign_seed_keypair
    seed, x_sk = det("backup-lead-ed25519", 32), det("backup-lead-x25519", 32)
    pk, sk = crypto_sign_seed_keypair(seed)
    actor = crypto_scalarmult_base(x_sk) + pk
    # -- a ledger entry and a ledger file (16a) --
    shredded = [det("shredded-record-b", 16), det("shredded-record-a", 16)]
    at = 1_780_000_000
    entries = []
    for r in shredded:
        body = bytes([1]) + vid + r + struct.pack(">Q", at) + actor
        entries.append(body + crypto_sign(b"dvault/v1/shred-ledger" + body, sk)[:64])
    ledger_body = (b"DVLEDGER" + bytes([1]) + vid + struct.pack(">I", len(entries))
                   + b"".join(e for _r, e in sorted(zip(shredded, entries))))
    ledger_file = ledger_body + hashlib.sha256(ledger_body).digest()
    # -- a backup file (16) with every value tag --
    tables = [
        ("dv_meta", ["name", "value"], [["vault_id", vid], ["format_version", b"1"]]),
        ("dv_audit", ["seq", "at", "detail", "reason"], [[1, -5, "{\"é\":1}", b""], [2, 2**40, "", None]]),
        ("dv_shreds", ["rid", "entry"], [[r, e] for r, e in sorted(zip(shredded, entries))]),
    ]
    head = det("backup-audit-head", 32)
    out = b"DVBACKUP" + bytes([1]) + vid + struct.pack(">QQ", 1_780_000_100, 2) + head + struct.pack(">H", len(tables))
    for name, cols, rows in sorted(tables):
        out += lp8(name.encode()) + bytes([len(cols)]) + b"".join(lp8(c.encode()) for c in cols)
        out += struct.pack(">Q", len(rows)) + b"".join(_backup_value(x) for row in rows for x in row)
    sig = crypto_sign(b"dvault/v1/backup-sig" + hashlib.sha256(out).digest(), sk)[:64]
    signed = out + actor + sig
    backup_file = signed + hashlib.sha256(signed).digest()
    return {
        "shred_ledger_v1.json": {
            "expect": "success",
            "description": "format.md 16a: entry = 0x01 || vault_id || record_id || u64 at || actor (x25519 || ed25519) "
                           "|| Ed25519(signer, 'dvault/v1/shred-ledger' || everything before the signature); ledger "
                           "file = 'DVLEDGER' || 0x01 || vault_id || u32 count || entries by record id || SHA-256",
            "vault_id": h(vid), "signer_ed25519_seed": h(seed), "actor": h(actor), "at": at,
            "record_ids": [h(r) for r in shredded], "entries": [h(e) for e in entries], "ledger_file": h(ledger_file)},
        "backup_v1.json": {
            "expect": "success",
            "description": "format.md 16: 'DVBACKUP' || 0x01 || vault_id || u64 made_at || u64 audit_seq || audit_head "
                           "|| u16 tables, tables by name, actor || Ed25519 over 'dvault/v1/backup-sig' || SHA-256(body), "
                           "SHA-256 of all before it",
            "vault_id": h(vid), "made_at": 1_780_000_100, "audit_seq": 2, "audit_head": h(head),
            "signer_ed25519_seed": h(seed), "actor": h(actor),
            "tables": [{"name": n, "columns": c, "rows": [[{"int": x} if isinstance(x, int) else {"text": x}
                                                           if isinstance(x, str) else None if x is None else
                                                           {"blob": h(x)} for x in row] for row in rows]}
                       for n, c, rows in tables],
            "file": h(backup_file)},
    }


def normalize_vectors() -> dict:
    """§10's normalisers, computed by normref.py (written from the spec alone, like this file)."""
    import unicodedata
    sys.path.insert(0, str(HERE))
    from normref import KINDS, normalize_ref, tokens_ref
    cases = [{"input": x, **{k: normalize_ref(k, x) for k in KINDS if k != "none"},
              "tokens": tokens_ref(normalize_ref("name", x))} for x in NORMALIZE_INPUTS]
    return {"description": "normalisers of docs/format.md §10: each kind's output, and tokens(name(input))",
            "unicode": unicodedata.unidata_version, "cases": cases}


def render(doc: dict) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    files = build()
    if "--check" in sys.argv:
        bad = [n for n, d in files.items() if (HERE / n).read_text("utf-8") != render(d)]
        print("differ: " + ", ".join(bad) if bad else "vectors up to date")
        return 1 if bad else 0
    for name, doc in files.items():
        (HERE / name).write_text(render(doc), "utf-8")
    print(f"wrote {len(files)} vector files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
