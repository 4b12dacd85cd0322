#!/usr/bin/env python3
"""A second implementation that reads a whole SQLite vault, written from docs/format.md.

It was written (2026-11-27) by someone who read only the spec and the vectors, never the
library; what it had to guess was then written into format.md. It imports nothing from
``vault`` (its normalisers are normref.py's, also spec-only), so
tests/test_independent_reader.py, which runs it over vaults the library built, checks
that the spec is enough to read a vault: unlock, every MAC and signature, every record,
the audit chain and record states, pseudonyms and blind-index terms. Usage:

    reader.py VAULT.sqlite --passphrase-file F       (recovery passphrase slot)
    reader.py VAULT.sqlite --identity F --identity-passphrase-file F2
    [--expected expected.json]   compare with library output (records + badge pseudonyms)
"""
import argparse
import base64
import hashlib
import hmac
import json
import sqlite3
import struct
import sys
import tomllib
import unicodedata

from argon2.low_level import Type, hash_secret_raw
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.exceptions import InvalidSignature, InvalidTag
import nacl.public

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from normref import normalize_ref, tokens_ref  # noqa: E402  (the spec-only normalisers beside this file)

VERSION = 1



B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def b64url(raw):
    """base64url without padding (§13a: tokens of the second kind)."""
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")

class FormatError(Exception):
    pass


# ---------------------------------------------------------------- primitives
def u8(n): return struct.pack(">B", n)
def u16(n): return struct.pack(">H", n)
def u32(n): return struct.pack(">I", n)
def u64(n): return struct.pack(">Q", n)


def lp8(x):
    if isinstance(x, str):
        x = x.encode()
    assert len(x) <= 255
    return u8(len(x)) + x


def sha256(b): return hashlib.sha256(b).digest()


def hkdf(ikm, info, length=32):
    # spec: HKDF-SHA256, salt none (RFC 5869: zero-filled), length assumed 32
    if isinstance(info, str):
        info = info.encode()
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(ikm)


def aead_open(key, nonce, ct, aad):
    return AESGCM(key).decrypt(nonce, ct, aad)


def hmac256(key, msg): return hmac.new(key, msg, hashlib.sha256).digest()


def ed_verify(pub, sig, msg):
    try:
        Ed25519PublicKey.from_public_bytes(pub).verify(sig, msg)
        return True
    except InvalidSignature:
        return False


def ed_pub_from_seed(seed):
    return Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def x_pub_from_secret(sec):
    return X25519PrivateKey.from_private_bytes(sec).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def seal_open(x_secret, box):
    return nacl.public.SealedBox(nacl.public.PrivateKey(x_secret)).decrypt(box)


def unpad(x):
    i = len(x)
    while i > 0 and x[i - 1] == 0:
        i -= 1
    if i == 0 or x[i - 1] != 0x80:
        raise FormatError("bad padding")
    return x[:i - 1]


def argon2id(passphrase, salt, t, m, p):
    pw = unicodedata.normalize("NFC", passphrase).encode()
    if not pw:
        raise FormatError("empty passphrase refused")
    return hash_secret_raw(pw, salt, time_cost=t, memory_cost=m, parallelism=p,
                           hash_len=32, type=Type.ID, version=19)


class R:
    """byte reader"""
    def __init__(self, b):
        self.b, self.i = b, 0

    def take(self, n):
        if self.i + n > len(self.b):
            raise FormatError("truncated")
        v = self.b[self.i:self.i + n]
        self.i += n
        return v

    def u8(self): return self.take(1)[0]
    def u16(self): return struct.unpack(">H", self.take(2))[0]
    def u32(self): return struct.unpack(">I", self.take(4))[0]
    def lp8(self): return self.take(self.u8())
    def done(self): return self.i == len(self.b)


def check_header(blob, kind):
    if len(blob) < 2 or blob[0] != VERSION:
        raise FormatError(f"unknown version in {kind!r} blob")
    if blob[1:2] != kind.encode():
        raise FormatError(f"expected kind {kind!r}, got {blob[1:2]!r}")


# ---------------------------------------------------------------- §8 passphrase slot
KDF_FLOOR = (3, 65536, 4)
KDF_CEIL = (16, 1 << 20, 16)


def open_passphrase_box(blob, passphrase, kind, bind, floor=KDF_FLOOR):
    """§8 (kind P, bind = vault_id) and §8a identity file (kind U, bind = b'')."""
    secret_len = 32 if kind == "P" else 64
    want = 38 + 12 + secret_len + 16 + 8
    if len(blob) != want:
        raise FormatError(f"{kind}: length {len(blob)} != {want}")
    body, chk = blob[:-8], blob[-8:]
    if sha256(body + bind)[:8] != chk:
        raise FormatError(f"{kind}: checksum mismatch (corrupt or other vault)")
    check_header(blob, kind)
    header = body[:38]
    t, m, p = struct.unpack(">III", header[10:22])
    salt = header[22:38]
    for v, lo, hi in zip((t, m, p), floor, KDF_CEIL):
        if not lo <= v <= hi:
            raise FormatError(f"{kind}: KDF parameters out of range {t, m, p}")
    kek = argon2id(passphrase, salt, t, m, p)
    nonce, ct = body[38:50], body[50:]
    try:
        return header[2:10], aead_open(kek, nonce, ct, header + bind)
    except InvalidTag:
        raise FormatError("wrong passphrase") from None


# ---------------------------------------------------------------- §7 keyring
def open_keyring(blob, slot_secret, vault_id, slot_kid=None):
    check_header(blob, "K")
    header = blob[:10]
    if slot_kid is not None and header[2:10] != slot_kid:
        raise FormatError("keyring names another slot")
    plain = aead_open(slot_secret, blob[10:22], blob[22:], header + vault_id)
    r = R(plain)
    keys = []
    for _ in range(r.u16()):
        kind = r.u8()
        name = r.lp8().decode()
        version = r.u32()
        kid = r.take(8)
        key = r.take(32)
        keys.append(dict(kind=kind, name=name, version=version, kid=kid, key=key))
    if not r.done():
        raise FormatError("keyring trailing bytes")
    return keys


class Keyring:
    def __init__(self, keys):
        self.keys = keys

    def of(self, kind, name=None):
        return [k for k in self.keys if k["kind"] == kind and (name is None or k["name"] == name)]

    def one(self, kind, name=None):
        ks = self.of(kind, name)
        return ks[0] if ks else None

    def current(self, kind, name):
        ks = self.of(kind, name)
        return max(ks, key=lambda k: k["version"]) if ks else None

    def by_kid(self, kind, kid):
        for k in self.keys:
            if k["kind"] == kind and k["kid"] == kid:
                return k
        return None

    @property
    def meta(self):
        return self.one(2)


# ---------------------------------------------------------------- §8a/§8b ids
def user_id_of(x_pub, ed_pub):
    return sha256(b"dvault-user-id" + x_pub + ed_pub)[:8]


def recovery_actor(kr):
    seed = kr.one(8)
    ed_pub = kr.one(7)["key"] if kr.one(7) else None
    x_pub = kr.one(9)["key"] if kr.one(9) else None
    out = dict(ed_pub=ed_pub, x_pub=x_pub)
    if seed:
        s = seed["key"]
        ed_seed = hkdf(s, "dvault/v1/recovery-signing")
        x_sec = hkdf(s, "dvault/v1/recovery-box")
        out.update(ed_seed=ed_seed, x_sec=x_sec,
                   ed_pub_derived=ed_pub_from_seed(ed_seed), x_pub_derived=x_pub_from_secret(x_sec))
    return out


def load_identity_file(path, passphrase, floor=KDF_FLOOR):
    text = open(path, "r", encoding="ascii").read()
    lines = [ln.strip() for ln in text.splitlines()]
    b64 = "".join(ln for ln in lines if ln and not ln.startswith("#"))
    blob = base64.b64decode(b64, validate=True)
    uid, secret = open_passphrase_box(blob, passphrase, "U", b"", floor)
    x_sec, ed_seed = secret[:32], secret[32:]
    x_pub, ed_pub = x_pub_from_secret(x_sec), ed_pub_from_seed(ed_seed)
    if user_id_of(x_pub, ed_pub) != uid:
        raise FormatError("identity file user id does not match its keys")
    return dict(user_id=uid, x_sec=x_sec, ed_seed=ed_seed, x_pub=x_pub, ed_pub=ed_pub)


# ---------------------------------------------------------------- §3 values
def decode_value(ftype, raw):
    if ftype == "bool":
        if raw not in (b"\x00", b"\x01"):
            raise FormatError("bad bool")
        return raw == b"\x01"
    if ftype == "integer":
        return int(raw.decode("ascii"))
    if ftype == "list":
        return decode_list(raw)
    return raw.decode("utf-8")  # text, enum, date


def decode_list(raw):
    """§3: u16 count, then count x (u16 length, UTF-8 item); nothing after; no repeats."""
    if len(raw) < 2:
        raise FormatError("list too short")
    count, pos, items = int.from_bytes(raw[:2], "big"), 2, []
    for _ in range(count):
        if pos + 2 > len(raw):
            raise FormatError("list item length missing")
        n = int.from_bytes(raw[pos:pos + 2], "big")
        if pos + 2 + n > len(raw):
            raise FormatError("list item past the end")
        items.append(raw[pos + 2:pos + 2 + n].decode("utf-8"))
        pos += 2 + n
    if pos != len(raw) or len(set(items)) != len(items):
        raise FormatError("bad list")
    return items


# ---------------------------------------------------------------- §4 §5 §5a §6
def manifest(names):
    names = sorted(n.encode() for n in names)
    return u16(len(names)) + b"".join(lp8(n) for n in names)


def dek_context_aad(header, vault_id, rid, cls, cls_version, names):
    return header + vault_id + rid + lp8(cls) + u32(cls_version) + manifest(names)


def parse_row(data):
    r = R(data)
    envs = []
    for _ in range(r.u8()):
        cls = r.lp8().decode()
        dek = r.take(r.u16())
        cells_b = r.take(r.u32())
        c = R(cells_b)
        cells = []
        for _ in range(c.u16()):
            name = c.lp8().decode()
            blob = c.take(c.u32())
            cells.append((name, blob))
        if not c.done():
            raise FormatError("cells trailing bytes")
        envs.append((cls, dek, cells))
    if not r.done():
        raise FormatError("row trailing bytes")
    return envs


class Reader:
    def __init__(self, path, floor=KDF_FLOOR):
        self.floor = floor  # the tests lower the Argon2id floor, as they do for the library
        self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        self.meta = {n: bytes(v) if v is not None else b"" for n, v in
                     self.db.execute("select name, value from dv_meta")}
        if self.meta.get("format_version") != b"1":
            raise FormatError("unknown format_version")
        self.vault_id = self.meta["vault_id"]
        self.report = {}
        self.unreadable = {}
        self.sealed_fields = {}
        self.users = {}
        for uid, name, role, public, slot_id in self.db.execute(
                "select user_id, name, role, public, slot_id from dv_users"):
            self.users[uid] = dict(user_id=uid, name=name, role=role, public=bytes(public), slot_id=slot_id)

    # -- unlocking
    def unlock_passphrase(self, passphrase):
        errs = []
        for slot_id, unlock, keyring in self.db.execute(
                "select slot_id, unlock, keyring from dv_slots where kind = 'passphrase'"):
            try:
                kid, secret = open_passphrase_box(bytes(unlock), passphrase, "P", self.vault_id, self.floor)
                if kid.hex() != slot_id:
                    raise FormatError("slot id mismatch")
                self.kr = Keyring(open_keyring(bytes(keyring), secret, self.vault_id, kid))
                self.opener = "passphrase"
                return
            except FormatError as e:
                errs.append(str(e))
        raise FormatError("no passphrase slot opens: " + "; ".join(errs))

    def unlock_shares(self, mnemonics, slip39_passphrase=""):
        """§8g: SLIP-39 (its reference implementation) gives the master secret; the unlock
        text derived from it is the passphrase of one of the kind P slots."""
        from shamir_mnemonic import combine_mnemonics
        master = combine_mnemonics(mnemonics, slip39_passphrase.encode("ascii"))
        self.unlock_passphrase("dvault-shares:" + hkdf(master, "dvault/v1/recovery-shares-unlock").hex())
        self.opener = "shares"

    def check_recovery_shares(self, res, signers):
        """§8g: the description's framing, signature, and the slot it names with its digest."""
        blob = self.meta.get("recovery_shares")
        if not blob:
            return
        check_header(blob, "H")
        r = R(blob[2:])
        kid = r.take(8)
        _ident, k, n, _exp, flags = r.u16(), r.u8(), r.u8(), r.u8(), r.u8()
        r.take(8)
        digest = r.take(32)
        r.take(2 * r.u8())
        body_len = r.i + 2
        who, sig = blob[body_len:body_len + 1], blob[body_len + 1:]
        res["recovery_shares_framing"] = len(sig) == 64 and 2 <= k <= n <= 16 and flags in (0, 1)
        res["recovery_shares_sig"] = signers.get(who) is not None and ed_verify(
            signers[who], sig, b"dvault/v1/recovery-shares-sig" + self.vault_id + blob[:body_len])
        row = self.db.execute("select kind, unlock from dv_slots where slot_id = ?", (kid.hex(),)).fetchone()
        res["recovery_shares_slot"] = row is not None and row[0] == "passphrase" and sha256(bytes(row[1])) == digest

    def unlock_identity(self, path, passphrase):
        ident = load_identity_file(path, passphrase, self.floor)
        uid = ident["user_id"].hex()
        user = self.users.get(uid)
        if not user:
            raise FormatError("identity is not a user of this vault")
        unlock, keyring = self.db.execute("select unlock, keyring from dv_slots where slot_id = ?",
                                          (user["slot_id"],)).fetchone()
        unlock = bytes(unlock)
        check_header(unlock, "X")
        inner = seal_open(ident["x_sec"], unlock[10:])
        if inner[:16] != self.vault_id:
            raise FormatError("X slot for another vault")
        self.kr = Keyring(open_keyring(bytes(keyring), inner[16:48], self.vault_id, unlock[2:10]))
        self.opener = "identity"
        self.identity = ident

    # -- §9, §9a, §9b, §8a, §10 plan MAC
    def check_meta(self):
        res = {}
        meta = self.kr.meta
        vid = self.vault_id
        schema = self.meta["schema"]
        blob = self.meta["schema_mac"]
        check_header(blob, "S")
        hdr = blob[:10]
        res["schema_mac"] = (hdr[2:10] == meta["kid"] and len(blob) == 42 and hmac.compare_digest(
            blob[10:], hmac256(meta["key"], b"dvault/v1/schema-mac" + hdr + vid + sha256(schema))))
        plan = self.meta["index_plan"]
        blob = self.meta["index_plan_mac"]
        check_header(blob, "I")
        hdr = blob[:10]
        res["index_plan_mac"] = hdr[2:10] == meta["kid"] and hmac.compare_digest(
            blob[10:], hmac256(meta["key"], b"dvault/v1/index-plan-mac" + hdr + vid + sha256(plan)))
        lead = self.kr.one(4)
        rec = recovery_actor(self.kr)
        signers = {b"L": lead["key"] if lead else None, b"R": rec["ed_pub"]}

        def who_sig(val, label, text):
            if len(val) != 65 or signers.get(val[:1]) is None:
                return False
            return ed_verify(signers[val[:1]], val[1:], label + vid + sha256(text))
        res["schema_sig"] = who_sig(self.meta.get("schema_sig", b""), b"dvault/v1/schema-sig", schema)
        res["index_plan_sig"] = who_sig(self.meta.get("index_plan_sig", b""), b"dvault/v1/index-plan-sig", plan)
        if self.meta.get("index_next"):
            res["index_next_sig"] = who_sig(self.meta["index_next_sig"], b"dvault/v1/index-plan-sig",
                                            self.meta["index_next"])
        if "recovery_pub" in self.meta and rec["ed_pub"]:
            res["recovery_pub_matches_keyring"] = self.meta["recovery_pub"] == rec["x_pub"] + rec["ed_pub"]
        if "ed_pub_derived" in rec:
            res["recovery_seed_matches_kind7_9"] = (rec["ed_pub_derived"] == rec["ed_pub"]
                                                    and rec["x_pub_derived"] == rec["x_pub"])
        # §8a roster
        rows = sorted(self.users.values(), key=lambda u: u["user_id"].encode())
        roster = b"dvault/v1/roster" + vid + u32(len(rows)) + b"".join(
            lp8(u["user_id"]) + lp8(u["name"]) + lp8(u["role"]) + u["public"] + lp8(u["slot_id"])
            for u in rows)
        if lead:
            res["lead_vk_matches_keyring"] = self.meta.get("lead_vk") == lead["key"]
            res["roster_sig"] = ed_verify(lead["key"], self.meta.get("roster_sig", b""), roster)
            res["user_ids"] = all(user_id_of(u["public"][:32], u["public"][32:]).hex() == u["user_id"]
                                  for u in rows)
            slot_ids = {u["slot_id"] for u in rows}
            res["x25519_slots_signed"] = all(
                s in slot_ids for (s,) in self.db.execute("select slot_id from dv_slots where kind='x25519'"))
        self.check_recovery_shares(res, signers)
        # §9b key statement
        stmt = self.meta.get("keys_stmt")
        if stmt:
            res["keys_stmt_sig"] = who_sig(self.meta.get("keys_stmt_sig", b""), b"dvault/v1/keys-sig", stmt)
            want = self.key_statement_lines()
            lines = stmt.decode("ascii").split("\n")
            assert lines[-1] == ""
            lines = lines[:-1]
            stored = int(self.meta["db_schema_version"])
            if lines[0] == "dvault keys v3":  # from v8: also the canary list's hash and every slot
                res["keys_stmt_header"] = stored >= 8
                res["keys_stmt_db"] = lines[2] == f"db {stored}"
                res["keys_stmt_users"] = lines[3] == "users " + hashlib.sha256(roster).hexdigest()
                res["keys_stmt_canaries"] = lines[4] == "canaries " + hashlib.sha256(
                    self.meta.get("canaries", b"")).hexdigest()
                slot_lines = [ln for ln in lines[5:] if ln.startswith("slot ")]
                named = [tuple(ln.split(" ")[1:]) for ln in slot_lines]  # id, kind, hex SHA-256(unlock)
                present = sorted((str(a), str(b), hashlib.sha256(bytes(c)).hexdigest())
                                 for a, b, c in self.db.execute("select slot_id, kind, unlock from dv_slots"))
                res["keys_stmt_slots_sorted"] = [n[0] for n in named] == sorted({n[0] for n in named})
                res["keys_stmt_slots_present"] = sorted(named) == present
                lines = lines[:2] + lines[5 + len(slot_lines):]
            elif lines[0] == "dvault keys v2":  # v7: db VERSION (the stored one) and the roster's digest
                res["keys_stmt_header"] = stored == 7
                res["keys_stmt_db"] = lines[2] == f"db {stored}"
                res["keys_stmt_users"] = lines[3] == "users " + hashlib.sha256(roster).hexdigest()
                lines = lines[:1] + lines[1:2] + lines[4:]
            else:  # v1 only below database schema v7
                res["keys_stmt_header"] = lines[0] == "dvault keys v1" and stored < 7
            res["keys_stmt_meta"] = lines[1] == want[0]
            got = {ln.split(" ")[1]: ln for ln in lines[2:]}
            res["keys_stmt_classes"] = all(got.get(ln.split(" ")[1]) == ln for ln in want[1:])
            for n in sorted({k["name"] for k in self.kr.of(6)} - {k["name"] for k in self.kr.of(1)}):
                k6 = max(self.kr.of(6, n), key=lambda k: k["version"])
                res[f"keys_stmt_write_only_{n}"] = got.get(n) == f"class {n} {k6['version']} {k6['kid'].hex()} {k6['key'].hex()}"
            # a full keyring should reproduce the statement exactly
            if self.opener in ("passphrase", "shares"):
                res["keys_stmt_exact"] = lines[1:] == want
        if int(self.meta["db_schema_version"]) >= 7:  # §13a: always there from version 7 on
            res["canaries_present"] = bool(self.meta.get("canaries"))
        c = self.meta.get("canaries")
        seed = self.kr.one(8)
        if c and int(self.meta["db_schema_version"]) >= 8:  # kind C, under the recovery seed: the lead's only
            if seed:
                check_header(c, "C")
                plain = aead_open(hkdf(seed["key"], "dvault/v1/canary-list"), c[2:14], c[14:], c[:2] + vid)
                assert len(plain) % 4096 == 0 and plain.rstrip(b"\x00").endswith(b"\x80")
                plain = plain.rstrip(b"\x00")[:-1]
                n = struct.unpack(">I", plain[:4])[0]
                res["canaries_decrypt"] = len(plain) == 4 + 24 * n
                self.canary_ids = {plain[4 + 24 * i:20 + 24 * i].hex() for i in range(n)}
        elif c:  # before v8: under the meta key, tags
            key = hkdf(meta["key"], "dvault/v1/canaries")
            plain = aead_open(key, c[:12], c[12:], vid)
            if not plain.endswith(b"]"):  # padded to a multiple of 4096 (format.md 13a)
                assert len(plain) % 4096 == 0 and plain.rstrip(b"\x00").endswith(b"\x80")
                plain = plain.rstrip(b"\x00")[:-1]
            tags = json.loads(plain)
            self.canary_tags = set(tags)
            res["canaries_decrypt"] = isinstance(tags, list)
        self.report["meta_checks"] = res
        return res

    def canary_tag(self, rid):
        return hmac256(hkdf(self.kr.meta["key"], "dvault/v1/canary-tag"), rid)[:16].hex()

    def reason_secret(self):
        """X25519 secret able to open kind R notes: the lead's (identity opener) or recovery's."""
        if getattr(self, "identity", None):
            return self.identity["x_sec"], self.identity["user_id"]
        rec = recovery_actor(self.kr)
        if "x_sec" in rec:
            return rec["x_sec"], user_id_of(rec["x_pub"], rec["ed_pub"])
        return None, None

    def open_reason(self, blob):
        sec, uid = self.reason_secret()
        if not blob or sec is None:
            return None
        if blob[:2] in (bytes([VERSION]) + b"R", bytes([VERSION]) + b"Q"):
            if blob[2:10] != uid:
                return None  # sealed to someone else
            inner = seal_open(sec, blob[10:])
            if inner[:10] != blob[:10]:
                raise FormatError("reason: inner header differs")
            body = inner[10:]
            if blob[1:2] == b"Q":  # padded: body || 0x80 || 0x00*, to a multiple of 32
                stripped = body.rstrip(b"\x00")
                if len(body) % 32 or not stripped.endswith(b"\x80"):
                    raise FormatError("reason: bad padding")
                body = stripped[:-1]
            return body.decode()
        return seal_open(sec, blob).decode()  # headerless legacy form

    def pin(self):
        return hmac256(self.kr.meta["key"], b"dvault/v1/keyring-pin" + self.vault_id)[:16].hex()

    def key_statement_lines(self):
        out = [f"meta {self.pin()}"]
        names = sorted({k["name"] for k in self.kr.of(1)})
        for n in names:
            k = self.kr.current(1, n)
            pub = x_pub_from_secret(hkdf(k["key"], "dvault/v1/class-box"))
            out.append(f"class {n} {k['version']} {k['kid'].hex()} {pub.hex()}")
        return out

    # -- schema
    def load_schema(self):
        self.schema = tomllib.loads(self.meta["schema"].decode("utf-8"))
        self.classes = self.schema["schema"]["classes"]
        self.fields = self.schema["fields"]

    # -- records
    def open_dek(self, rid, cls, dek, names):
        vid = self.vault_id
        kind = dek[1:2]
        check_header(dek, kind.decode())
        if kind == b"D":
            if len(dek) != 78:
                raise FormatError("D length")
            hdr = dek[:18]
            ck = self.kr.by_kid(1, hdr[2:10])
            if ck is None or ck["name"] != cls:
                raise FormatError(f"class key {hdr[2:10].hex()} unknown or not of class {cls}")
            aad = dek_context_aad(hdr, vid, rid, cls, ck["version"], names)
            return hdr[10:18], aead_open(ck["key"], dek[18:30], dek[30:], aad), "D"
        if kind == b"W":
            if len(dek) != 202:
                raise FormatError("W length")
            hdr, box, sig = dek[:26], dek[26:138], dek[138:]
            ck = self.kr.by_kid(1, hdr[2:10])
            if ck is None or ck["name"] != cls:
                raise FormatError("W: class key unknown")
            ctx = sha256(dek_context_aad(hdr, vid, rid, cls, ck["version"], names))
            writer = self.users.get(hdr[18:26].hex())
            if writer is None:
                raise FormatError("W: writer not in signed user table")
            role = self.schema.get("roles", {}).get(writer["role"], {})
            if cls not in role.get("write_only", []):
                raise FormatError("W: writer's role may not fill this class")
            if not ed_verify(writer["public"][32:], sig, b"dvault/v1/sealed-dek-sig" + hdr + box + ctx):
                raise FormatError("W: bad signature")
            inner = seal_open(hkdf(ck["key"], "dvault/v1/class-box"), box)
            if inner[32:] != ctx:
                raise FormatError("W: context mismatch")
            return hdr[10:18], inner[:32], "W"
        if kind == b"E":
            if self.db_version() >= 5:
                raise FormatError("kind E refused from schema v5")
            hdr, box = dek[:18], dek[18:]
            ck = self.kr.by_kid(1, hdr[2:10])
            ctx = sha256(dek_context_aad(hdr, vid, rid, cls, ck["version"], names))
            inner = seal_open(hkdf(ck["key"], "dvault/v1/class-box"), box)
            if inner[32:] != ctx:
                raise FormatError("E: context mismatch")
            return hdr[10:18], inner[:32], "E"
        raise FormatError(f"unknown DEK kind {kind!r}")

    # -- §6b record rows of format 2 and §6c of format 3
    def read_record_v2(self, rid, data):
        numbers = list(self.fields)  # field number = 1-based position in the schema's [fields]
        r = R(data)
        head = r.take(2)
        if head not in (b"\x00\x02", b"\x00\x03"):
            raise FormatError("not a format-2 or 3 row")
        joint = head == b"\x00\x03"
        out, dek_ids, kinds = {}, b"", []
        for cls in self.classes:
            kind = r.b[r.i:r.i + 2]
            klen = {b"\x02H": 18, b"\x01D": 78, b"\x01W": 202}.get(kind)
            if klen is None:
                raise FormatError(f"format 2: unknown key kind {kind!r}")
            key = r.take(klen)
            cells, prev = [], 0
            for _ in range(r.u8()):
                fno, b = r.u8(), r.u8()
                if b == 0:
                    b = r.u32()
                    if b < 256:
                        raise FormatError("long size form below 256 blocks")
                if fno <= prev or fno > len(numbers):
                    raise FormatError("field numbers not ascending or unknown")
                prev = fno
                name = numbers[fno - 1]
                if self.fields[name].get("class") != cls:
                    raise FormatError(f"field {name} not in class {cls}")
                cells.append((fno, name, r.take(32 * b + (0 if joint else 16))))
            check = r.take(16) if joint or not cells else b""
            names = [n for _, n, _ in cells]
            dek_id = key[10:18]
            dek_ids += dek_id
            if not self.kr.of(1, cls):
                kinds.append(kind[1:2].decode() + "(not held)")
                self.unreadable[cls] = self.unreadable.get(cls, 0) + 1
                continue
            if kind == b"\x02H":
                ck = self.kr.by_kid(1, key[2:10])
                if ck is None or ck["name"] != cls:
                    raise FormatError("H: class key unknown or of another class")
                label = b"dvault/v3/record-dek" if joint else b"dvault/v2/record-dek"
                info = (label + key + self.vault_id + rid + lp8(cls) + u32(ck["version"])
                        + manifest(names))
                dek = hmac256(hkdf(ck["key"], "dvault/v2/record-dek-key"), info + b"\x01")
                kinds.append("H")
            else:
                _, dek, k = self.open_dek(rid, cls, key, names)
                kinds.append(k)
                if k == "W":
                    self.sealed_fields.setdefault(rid, set()).update(names)
            if joint:  # one ciphertext: the cells' bytes in order, then the tag
                aad = b"\x03J" + dek_id + self.vault_id + rid + u8(len(cells))
                aad += b"".join(u8(fno) + lp8(name) + u32(len(ct) // 32) for fno, name, ct in cells)
                pt = aead_open(dek, bytes(12), b"".join(ct for _, _, ct in cells) + check, aad)
                off = 0
                for _, name, ct in cells:
                    out[name] = decode_value(self.fields[name]["type"], unpad(pt[off:off + len(ct)]))
                    off += len(ct)
                continue
            if not cells:
                aead_open(dek, b"\xff" * 12, check, b"\x02C" + dek_id + self.vault_id + rid)
            for fno, name, ct in cells:
                aad = b"\x02F" + dek_id + self.vault_id + rid + u8(fno) + lp8(name)
                pt = aead_open(dek, bytes(11) + u8(fno), ct, aad)
                out[name] = decode_value(self.fields[name]["type"], unpad(pt))
        if not r.done():
            raise FormatError("row trailing bytes")
        return out, dek_ids, kinds

    def read_record(self, rid, data):
        if data[:1] == b"\x00":
            return self.read_record_v2(rid, data)
        envs = parse_row(data)
        if [e[0] for e in envs] != self.classes:
            raise FormatError("row classes differ from schema")
        out, dek_ids, kinds = {}, b"", []
        for cls, dek, cells in envs:
            names = [n for n, _ in cells]
            if [n.encode() for n in names] != sorted(n.encode() for n in names) or len(set(names)) != len(names):
                raise FormatError("cells not sorted/unique")
            for n in names:
                if self.fields.get(n, {}).get("class") != cls:
                    raise FormatError(f"field {n} not in class {cls}")
            dek_ids += dek[10:18]  # DEK id sits at the same offset in D, W and E headers
            if not self.kr.of(1, cls):
                kinds.append(dek[1:2].decode() + "(not held)")
                self.unreadable.setdefault(cls, 0)
                self.unreadable[cls] += 1
                continue
            dek_id, key, kind = self.open_dek(rid, cls, dek, names)
            kinds.append(kind)
            if kind == "W":
                self.sealed_fields.setdefault(rid, set()).update(names)
            for name, blob in cells:
                check_header(blob, "F")
                if blob[2:10] != dek_id:
                    raise FormatError("field names another DEK")
                aad = blob[:10] + self.vault_id + rid + lp8(name)
                pt = aead_open(key, blob[10:22], blob[22:], aad)
                out[name] = decode_value(self.fields[name]["type"], unpad(pt))
        return out, dek_ids, kinds

    def records(self):
        for rid, data in self.db.execute("select id, data from dv_records order by rowid"):
            yield bytes(rid), bytes(data)

    # -- §13a record states
    STATES_V2_FROM = 9  # the database version from which rows' states are of the second kind

    def state_token(self, rid, dek_ids):
        """The first kind: over the row's DEK ids, in row order (24 hex characters)."""
        k = hkdf(self.kr.meta["key"], "dvault/v1/record-state")
        return hmac256(k, self.vault_id + rid + dek_ids)[:12].hex()

    def second_kind(self):
        """Whether the vault's rows are named by states of the second kind (db v9 on)."""
        return self.db_version() >= self.STATES_V2_FROM

    def db_version(self):
        """dv_meta.db_schema_version (hostile input: not a number reads as 0, and fails §9b)."""
        try:
            return int(self.meta.get("db_schema_version", b"0"))
        except ValueError:
            return 0

    def envelope_bodies(self, data):
        """(class, DEK id, body) of each envelope, in schema order, by framing alone: the DEK
        id is bytes 10..18 of the envelope's key (format 1: of its DEK blob), the body every
        byte after the key (formats 2 and 3: the count byte through the last cell and the
        check tag or tag; format 1: the cells container, without its u32 length)."""
        r = R(data)
        got = {}
        if data[:2] in (b"\x00\x02", b"\x00\x03"):
            joint = data[1] == 3
            r.take(2)
            for cls in self.classes:
                klen = {b"\x02H": 18, b"\x01D": 78, b"\x01W": 202}.get(r.b[r.i:r.i + 2])
                if klen is None:
                    raise FormatError("record state: unknown key kind")
                did = r.take(klen)[10:18]
                start, count = r.i, r.u8()
                for _ in range(count):
                    r.u8()
                    b = r.u8()
                    r.take(32 * (r.u32() if b == 0 else b) + (0 if joint else 16))
                if joint or not count:
                    r.take(16)
                got[cls] = (did, r.b[start:r.i])
        else:
            for _ in range(r.u8()):
                cls = r.lp8().decode("ascii")
                did = r.take(r.u16())[10:18]
                if cls in got:
                    raise FormatError("record state: a class twice")
                got[cls] = (did, r.take(r.u32()))
        if not r.done() or set(got) != set(self.classes):
            raise FormatError("record state: row framing")
        return [(c, *got[c]) for c in self.classes]

    def state_key_v2(self):
        return hkdf(self.kr.meta["key"], "dvault/v2/record-state")

    def state_parts(self, rid, data):
        """The second kind: class -> part (16 bytes), in schema order."""
        k = self.state_key_v2()
        return {c: hmac256(k, b"part" + self.vault_id + rid + lp8(c.encode("ascii")) + did + body)[:16]
                for c, did, body in self.envelope_bodies(data)}

    def mac_of_parts(self, parts):
        """The second kind's row MAC (24 bytes, 32 base64url characters) from the parts, in
        schema order."""
        return b64url(hmac256(self.state_key_v2(), b"row" + self.vault_id + b"".join(parts))[:24])

    def record_tag(self, rid):
        """The second kind's record tag (12 bytes, 16 base64url characters), which opens each
        token."""
        return b64url(hmac256(self.state_key_v2(), b"rec" + self.vault_id + rid)[:12])

    def token_of_parts(self, rid, parts):
        """The second kind's token (48 base64url characters): the record's tag, then the MAC."""
        return self.record_tag(rid) + self.mac_of_parts(parts)

    def mac_of_named(self, named):
        """The MAC of an update's ``was`` or ``now`` (class -> hex part), or None unless it
        names exactly the schema's classes, each with 32 lower-case hex characters."""
        if not isinstance(named, dict) or set(named) != set(self.classes):
            return None
        parts = [named[c] for c in self.classes]
        if not all(isinstance(x, str) and len(x) == 32 and set(x) <= set("0123456789abcdef") for x in parts):
            return None
        return self.mac_of_parts([bytes.fromhex(x) for x in parts])

    def row_token(self, rid, data, dek_ids):
        """The row's token of the kind the vault is at."""
        if self.second_kind():
            return self.token_of_parts(rid, list(self.state_parts(rid, data).values()))
        return self.state_token(rid, dek_ids)

    # -- §11 pseudonyms
    CROCK = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

    @staticmethod
    def gf_double(x):
        x <<= 1
        if x & 0x20:
            x ^= 0b100101  # x^5 + x^2 + 1
        return x

    @classmethod
    def damm_check(cls, digits):
        interim = 0
        for d in digits:
            interim = cls.gf_double(interim) ^ d
        return cls.gf_double(interim)

    def pseudonym_value(self, purpose, rid, pk=None):
        pk = pk or self.kr.current(3, purpose)["key"]
        prf = hkdf(pk, "dvault/v1/pseudonym")
        return struct.unpack(">Q", hmac256(prf, rid)[:8])[0] >> 14

    @classmethod
    def spell(cls, purpose, value):
        digits = [(value >> (5 * (9 - i))) & 31 for i in range(10)]
        check = cls.damm_check(digits)
        s = "".join(cls.CROCK[d] for d in digits) + cls.CROCK[check]
        return f"{purpose[:2].upper()}-{s[0:4]}-{s[4:8]}-{s[8:11]}"

    def pseudonym(self, purpose, rid):
        return self.spell(purpose, self.pseudonym_value(purpose, rid))

    def pseudonym_row_ok(self, purpose, rid):
        pk = self.kr.current(3, purpose)
        value = self.pseudonym_value(purpose, rid)
        tag = hmac256(hkdf(pk["key"], "dvault/v1/pseudonym-tag"), u64(value))[:16]
        row = self.db.execute("select ref from dv_pseudonyms where purpose=? and tag=?", (purpose, tag)).fetchone()
        if row is None:
            return None
        ref = bytes(row[0])
        check_header(ref, "N")
        k = self.kr.by_kid(3, ref[2:10])
        ref_key = hkdf(k["key"], "dvault/v1/pseudonym-ref")
        got = aead_open(ref_key, ref[10:22], ref[22:], ref[:10] + lp8(purpose) + tag)
        return got == rid

    # -- §10 blind index
    def index_bits(self, name):
        """§10: a version 2 or 3 plan's bits for one index (0 if it does not name it); a
        version 1 plan's one number for every index."""
        plan = json.loads(self.meta["index_plan"])
        if plan.get("v") in (2, 3):
            return plan["bits"].get(name, 0)
        if "v" in plan:
            raise FormatError("unknown index plan version")
        return plan["bits"]

    def index_value(self, cls, field, kind, data, bits):
        """§10 for one term; ``data`` is the HMAC input (normalised UTF-8 or a value encoding)."""
        ver = json.loads(self.meta["index_plan"])["class_versions"][cls]
        ck = [k for k in self.kr.of(1, cls) if k["version"] == ver][0]
        ik = hkdf(ck["key"], b"dvault/v1/blind-index" + lp8(field) + lp8(kind))
        if bits == 0:
            return 0
        return struct.unpack(">I", hmac256(ik, data)[:4])[0] >> (32 - bits)

    def index_has(self, gen, name, value, rid, width=16):
        """§10 "Stored rows": the bucket's rows hold record-id prefixes of the generation's
        width (the plan's id_bytes: 8 for a version 3 plan, 16 before)."""
        for (ids,) in self.db.execute("select ids from dv_index where gen=? and name=? and value=?",
                                      (gen, name, value)):
            ids = bytes(ids)
            if not ids or len(ids) % width:
                raise FormatError("malformed index row")
            if rid[:width] in [ids[i:i + width] for i in range(0, len(ids), width)]:
                return True
        return False

    # -- §13a audit
    def verify_audit(self):
        rec = recovery_actor(self.kr)
        actors = {u["public"] for u in self.users.values()}
        if rec["ed_pub"]:
            actors.add(rec["x_pub"] + rec["ed_pub"])
        prev_hash = b"\0" * 32
        expect_seq = 1
        n, problems, unsigned = 0, [], 0
        state_entries, with_states = 0, []
        decisions, hashes = [], {}  # the lead's quarantine decisions (actor, seq, hash); each entry's hash
        targets = set()
        seen_labelled = False
        self.reasons, self.reasons_sealed_elsewhere = [], 0
        for seq, prev, at, actor, action, target, detail, reason, h, sig in self.db.execute(
                "select seq, prev, at, actor, action, target, detail, reason, hash, sig from dv_audit order by seq"):
            prev, actor, reason, h, sig = map(bytes, (prev, actor, reason, h, sig))
            detail_b = detail.encode() if isinstance(detail, str) else bytes(detail)
            if seq != expect_seq:
                problems.append((seq, "seq gap/repeat"))
            if prev != prev_hash:
                problems.append((seq, "prev mismatch"))
            body = (u64(seq) + u64(at) + prev + actor + lp8(action) + lp8(target)
                    + u32(len(detail_b)) + detail_b + u32(len(reason)) + reason)
            # §13a: the labelled form (hash label "dvault/v1/log-entry", signature over
            # "dvault/v1/audit-sig" || hash) or the older one; none older after a labelled one
            labelled = None
            if sha256(b"dvault/v1/log-entry" + body) == h:
                labelled = True
                seen_labelled = True
            elif sha256(b"dvault/v1/audit" + body) == h:
                labelled = False
                if seen_labelled:
                    problems.append((seq, "older form after the labelled form"))
            else:
                problems.append((seq, "hash mismatch"))
            if sig == b"\0" * 64 and action == "unlock_failed":
                unsigned += 1
                zero = actor == b"\0" * 64
                if target or reason or detail_b != (b'{"with":"passphrase"}' if zero else b'{"with":"identity"}'):
                    problems.append((seq, "unsigned entry of another shape"))
            else:
                if actor not in actors:
                    problems.append((seq, "unknown actor"))
                elif not ed_verify(actor[32:], sig, (b"dvault/v1/audit-sig" + h) if labelled else h):
                    problems.append((seq, "bad signature"))
            try:  # §13a "Malformed rows": no reader stops at an entry
                d = json.loads(detail_b) if detail_b else {}
            except (ValueError, RecursionError):
                problems.append((seq, "detail is not JSON"))
                d = {}
            st = d.get("state") if isinstance(d, dict) else None
            if action == "quarantine" and isinstance(d, dict) and isinstance(d.get("seq"), int):
                decisions.append((actor, d.get("seq"), d.get("hash")))
            hashes[seq] = h
            if st or (isinstance(d, dict) and "upgrade" in d):  # (an upgrade with no rows has no state)
                state_entries += 1 if st else 0
                with_states.append((seq, actor, action, d, st if isinstance(st, dict) else {}))
            if target:
                targets.add(target)
            if reason:
                try:
                    txt = self.open_reason(reason)
                    if txt is not None:
                        self.reasons.append((seq, txt))
                    else:
                        self.reasons_sealed_elsewhere += 1
                except Exception as e:  # noqa
                    problems.append((seq, f"reason does not open: {e}"))
            prev_hash = h
            expect_seq = seq + 1
            n += 1
        deciders = self.deciders()  # §13a "Quarantine": a decider's decision naming an entry by seq and hash
        held = {q for a, q, hx in decisions if a in deciders and isinstance(hx, str) and q in hashes
                and hashes[q].hex() == hx}
        live, dropped, state_problems, since = self.replay_states([x for x in with_states if x[0] not in held])
        self.report["audit"] = dict(count=n, head=prev_hash.hex(), problems=problems,
                                    unsigned_unlock_failed=unsigned, state_entries=state_entries,
                                    state_problems=state_problems, second_kind_since=since)
        self.audit_live, self.audit_dropped, self.audit_targets = live, dropped, targets
        return self.report["audit"]


    def deciders(self):
        """The lead (its Ed25519 key, keyring kind 4 or dv_meta.lead_vk) and the recovery actor."""
        lead = self.kr.one(4)
        lead_vk = lead["key"] if lead else self.meta.get("lead_vk") or None
        out = {u["public"] for u in self.users.values() if lead_vk and u["public"][32:] == lead_vk}
        rec = recovery_actor(self.kr)
        if rec["x_pub"] and rec["ed_pub"]:
            out.add(rec["x_pub"] + rec["ed_pub"])
        elif len(self.meta.get("recovery_pub", b"")) == 64:
            out.add(self.meta["recovery_pub"])
        return out

    def replay_states(self, entries):
        """§13a "Record states" of both kinds, over (seq, actor, action, detail, state) in seq
        order. The first kind (24 hex) names rows before the upgrade's ``restate`` (a decider's,
        ``upgrade: 9``), the second (48 base64url: the record's tag, then the row's MAC) after it, or
        throughout if there is none and the
        vault is at version 9 or later. The upgrade's pairs move a row's state only where the
        dropped token is live (one dropped before: the new one counts as dropped too). An
        update of the second kind carries ``was`` and ``now``, whose tokens must be the ones
        it drops and puts. An entry whose states break these rules (or the shapes and the
        records each action may name) is reported and not replayed; a quarantined entry is
        left out. (Whose role may write what is not checked here.)"""
        v1 = lambda t: isinstance(t, str) and len(t) == 24 and set(t) <= set("0123456789abcdef")  # noqa: E731
        v2 = lambda t: isinstance(t, str) and len(t) == 48 and set(t) <= set(B64URL)  # noqa: E731
        deciders = self.deciders()

        def upgrade(actor, action, d):
            return action == "restate" and actor in deciders and d.get("upgrade") == self.STATES_V2_FROM
        since = next((seq for seq, actor, action, d, _ in entries if upgrade(actor, action, d)),
                     0 if self.second_kind() else None)
        live, dropped, problems, put_before, first = set(), set(), [], set(), True
        added, gone, now = set(), set(), {}  # second kind: records added, shredded, each one's state now
        for seq, actor, action, d, st in entries:
            drop, put = st.get("drop", []), st.get("put", [])
            if not (isinstance(drop, list) and isinstance(put, list)) or set(st) - {"drop", "put", "was", "now"} \
                    or not all(isinstance(t, str) for t in drop + put):
                problems.append((seq, "malformed state"))
                continue
            if upgrade(actor, action, d):
                if not (len(drop) == len(put) and all(map(v1, drop)) and all(map(v2, put))):
                    problems.append((seq, "upgrade: not first-kind drops paired with second-kind puts"))
                    continue
                for old, new in zip(drop, put):
                    if old in live:
                        live.discard(old)
                        dropped.add(old)
                        live.add(new)
                        added.add(new[:16])
                        now[new[:16]] = new
                    elif old in dropped:
                        dropped.add(new)
                        added.add(new[:16])
                first = False
                put_before.update(put)
                continue
            second = since is not None and seq > since
            want = v2 if second else v1
            any_drop = action == "restate" and actor in deciders
            shape = self.shape_rule(action, any_drop, d, drop, put, first)
            if shape is None and not any_drop and (len(set(put)) != len(put) or not put_before.isdisjoint(put)):
                shape = "puts a state an earlier entry put already"
            if shape:
                problems.append((seq, shape))
                continue
            if not (all(map(want, put)) and all(want(t) or (any_drop and second and v1(t)) for t in drop)):
                problems.append((seq, f"states not of the {'second' if second else 'first'} kind"))
                continue
            has_parts = "was" in st or "now" in st
            if action == "update" and second:
                if len(drop) != 1 or len(put) != 1 or drop[0][:16] != put[0][:16] \
                        or self.mac_of_named(st.get("was")) != drop[0][16:] \
                        or self.mac_of_named(st.get("now")) != put[0][16:]:
                    problems.append((seq, "update: its parts do not give the states it names"))
                    continue
            elif has_parts:
                problems.append((seq, "parts on an entry that takes none"))
                continue
            if second:
                why = self.records_rule(action, any_drop, d, drop, put, added, gone, now)
                if why:
                    problems.append((seq, why))
                    continue
            if second and action == "reencrypt":  # record by record: one from a state left stays dropped
                new = {t[:16]: t for t in put}
                for t in drop:
                    r = t[:16]
                    if now.get(r) == t and t in live:
                        live.discard(t)
                        dropped.add(t)
                        live.add(new[r])
                        now[r] = new[r]
                    elif t in dropped or r in now:
                        dropped.add(new[r])
                first = False
                put_before.update(put)
                continue
            for t in drop:
                live.discard(t)
                dropped.add(t)
            live.update(put)
            if second and action == "shred":
                gone.update(t[:16] for t in drop)
                for t in drop:
                    now.pop(t[:16], None)
            elif second:
                named = {t[:16] for t in put}
                added |= named
                if any_drop:  # a decider's restate takes the rows as they are
                    gone -= named
                    for t in drop:
                        if v2(t) and t[:16] not in named and now.get(t[:16]) == t:
                            del now[t[:16]]
                            gone.add(t[:16])
                now.update((t[:16], t) for t in put)
            first = False
            put_before.update(put)
        return live, dropped, problems, since

    WRITERS = ("add", "import", "update", "shred", "reencrypt", "restate")

    @classmethod
    def shape_rule(cls, action, decider_restate, d, drop, put, first):
        """§13a: only entries that write rows carry states, in their action's shape; a
        restate only the lead's or the recovery actor's, or the log's first state-carrying
        entry as a baseline with no drop. None if the entry fits."""
        if action not in cls.WRITERS:
            return "an entry that writes no rows carries states"
        if action == "restate":
            ok = decider_restate or (d.get("baseline") is True and first and not drop)
        else:
            ok = {"add": bool(put) and not drop, "import": bool(put) and not drop,
                  "update": len(drop) == 1 and len(put) == 1, "shred": len(drop) == 1 and not put,
                  "reencrypt": bool(drop) and len(drop) == len(put)}[action]
        return None if ok else f"states that do not fit a {action} entry"

    @staticmethod
    def records_rule(action, decider_restate, d, drop, put, added, gone, now):
        """§13a, second kind: an add, an import or a baseline names records never added; an
        update or a re-encryption records added and not shredded, the same ones before and
        after, each once (an update from the record's state now; a re-encryption is taken
        record by record); a shred a record not shredded. None if the entry fits."""
        before, after = sorted(t[:16] for t in drop), sorted(t[:16] for t in put)
        if action in ("add", "import") or (action == "restate" and d.get("baseline") is True):
            if len(set(after)) != len(after) or not added.isdisjoint(after):
                return "adds a record added before"
        elif action in ("update", "shred", "reencrypt"):
            if (action != "shred" and before != after) or len(set(before)) != len(before):
                return "names other records before and after"
            if action != "reencrypt" and any(r in gone or (r not in added and action != "shred") for r in before):
                return "names a record never added, or one shredded"
            if action == "update" and any(now.get(t[:16]) != t for t in drop):
                return "does not start from the record's state now"
        return None


# ---------------------------------------------------------------- normalisation (§10, partial)
def encode_value(ftype, v):
    """§3's value encoding of a decoded value: a typed field's blind-index input (§10)."""
    if ftype == "bool":
        return b"\x01" if v else b"\x00"
    if ftype == "integer":
        return str(v).encode("ascii")
    return v.encode("utf-8")  # text, enum, date (already YYYY-MM-DD text here)


def index_terms(spec, value):
    """(index name suffix, kind, HMAC input) of one field value, §10."""
    if spec.get("type") != "text":
        return [("", "exact", encode_value(spec["type"], value))]
    out = [("", "exact", normalize_ref(spec.get("normalize", "text"), value).encode("utf-8"))]
    if spec.get("tokens"):
        out += [("#tokens", "token", t.encode("utf-8")) for t in tokens_ref(normalize_ref("name", value))]
    return out


# ---------------------------------------------------------------- the whole check
def check(path, *, passphrase=None, identity=None, identity_passphrase=None, expected=None,
          floor=KDF_FLOOR, show=None, shares=None):
    """Run every step; returns [(step, ok, info)]. ``expected`` = {"records": {id: values},
    "badge": {id: pseudonym}, "shredded": id} as the library returned them."""
    rd = Reader(path, floor)
    steps = []

    def step(name, cond, info=""):
        steps.append((name, bool(cond), info))

    # 1. unlock
    if identity:
        rd.unlock_identity(identity, identity_passphrase)
    elif shares:
        rd.unlock_shares(shares)
    else:
        rd.unlock_passphrase(passphrase)
    step("unlock", True, f"({rd.opener}; {len(rd.kr.keys)} keyring entries, kinds "
         f"{sorted({k['kind'] for k in rd.kr.keys})})")
    # 2. meta
    rd.load_schema()
    for k, v in rd.check_meta().items():
        step(f"meta:{k}", v)
    # 3. records
    got, n_bad, kinds_seen, tokens_by_rid = {}, 0, {}, {}
    for rid, data in rd.records():
        try:
            vals, dek_ids, kinds = rd.read_record(rid, data)
        except (FormatError, InvalidTag) as e:
            n_bad += 1
            step(f"record {rid.hex()}", False, f"{type(e).__name__} {e}")
            continue
        for k in kinds:
            kinds_seen[k] = kinds_seen.get(k, 0) + 1
        got[rid.hex()] = vals
        tokens_by_rid[rid] = rd.row_token(rid, data, dek_ids)
        if show is not None:
            show(json.dumps({"id": rid.hex(), **vals}, ensure_ascii=False, sort_keys=True))
    step("records decrypted", n_bad == 0, f"({len(got)} records, DEK kinds {kinds_seen}, "
         f"classes not held: {rd.unreadable})")
    if expected:
        diff = sorted(r for r in set(got) | set(expected["records"]) if got.get(r) != expected["records"].get(r))
        step("records == library get()", not diff, f"(differ: {diff[:3]})")
        step("shredded record absent", expected["shredded"] not in got)
    # 4. audit
    au = rd.verify_audit()
    step("audit chain + signatures", not au["problems"],
         f"(count={au['count']} head={au['head']} problems={au['problems'][:5]})")
    if getattr(rd, "canary_tags", None) is not None:
        found = [r for r in got if rd.canary_tag(bytes.fromhex(r)) in rd.canary_tags]
        step("canaries", len(found) == len(rd.canary_tags), f"(canary records: {found})")
    if getattr(rd, "canary_ids", None) is not None:
        found = [r for r in got if r in rd.canary_ids]
        step("canaries", set(found) <= rd.canary_ids, f"(canary records: {found})")
    step("record states: of the kind the log takes there; updates' parts give their tokens",
         not au["state_problems"], f"(second kind since seq {au['second_kind_since']}; "
         f"problems={au['state_problems'][:5]})")
    row_tokens = set(tokens_by_rid.values())
    step("record states: every row's token live", row_tokens <= rd.audit_live,
         f"(rows={len(row_tokens)} live={len(rd.audit_live)} dropped={len(rd.audit_dropped)})")
    step("record states: no live token without a row", rd.audit_live <= row_tokens)
    # 5. pseudonyms
    if expected:
        mism = [r for r in expected["badge"] if rd.pseudonym("badge", bytes.fromhex(r)) != expected["badge"][r]]
        step("badge pseudonyms == library pseudonym()", not mism, f"(mismatches {len(mism)})")
    refs = [rd.pseudonym_row_ok("badge", bytes.fromhex(r)) for r in got]
    step("dv_pseudonyms badge rows resolve (tag + ref)", all(x is True for x in refs if x is not None),
         f"({sum(x is True for x in refs)} stored rows ok, {refs.count(None)} not issued)")
    aud = {rd.pseudonym("audit", bytes.fromhex(r)) for r in got}
    step("audit targets are audit pseudonyms of live records", len(aud & rd.audit_targets) == len(got),
         f"({len(aud & rd.audit_targets)}/{len(got)} records appear as targets)")
    # 6. blind index
    plan = json.loads(rd.meta["index_plan"])
    if plan.get("v") == 3 and (type(plan.get("id_bytes")) is not int or plan["id_bytes"] != 8):
        raise FormatError("index plan of version 3 with another width than 8")
    if plan.get("v") != 3 and "id_bytes" in plan:
        raise FormatError("index plan names a width but is not of version 3")
    width = plan["id_bytes"] if plan.get("v") == 3 else 16
    checked = missing = sealed_skipped = 0
    for rhex, vals in got.items():
        rid = bytes.fromhex(rhex)
        for f, spec in rd.fields.items():
            if spec.get("search") != "exact" or f not in vals:
                continue
            if f in rd.sealed_fields.get(rid, ()):
                sealed_skipped += 1  # written by a write-only role (§5a, §10): it cannot index
                continue
            for suffix, kind, data in index_terms(spec, vals[f]):
                v = rd.index_value(spec["class"], f, kind, data, rd.index_bits(f + suffix))
                checked += 1
                if not rd.index_has(plan["gen"], f + suffix, v, rid, width):
                    missing += 1
    step("blind index terms present", missing == 0 and checked > 0,
         f"({checked} terms checked, {missing} missing; {sealed_skipped} values in kind W envelopes skipped)")
    rd.db.close()
    return steps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("vault")
    ap.add_argument("--passphrase-file")
    ap.add_argument("--identity")
    ap.add_argument("--identity-passphrase-file")
    ap.add_argument("--expected")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args()

    def read(path):
        return open(path, encoding="utf-8").read().rstrip("\n") if path else None
    steps = check(a.vault, passphrase=read(a.passphrase_file), identity=a.identity,
                  identity_passphrase=read(a.identity_passphrase_file),
                  expected=json.load(open(a.expected)) if a.expected else None,
                  show=None if a.quiet else print)
    for name, ok, info in steps:
        print(f"# [{'OK' if ok else 'FAIL'}] {name} {info}", file=sys.stderr)
    ok = all(ok for _, ok, _ in steps)
    print(f"# {'ALL OK' if ok else 'SOME CHECKS FAILED'}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
