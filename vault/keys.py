"""Key hierarchy above the records: keyrings, key slots and the schema MAC.

    passphrase --Argon2id--> KEK --AEAD--> slot secret --AEAD--> keyring
                                                              (class keys, meta key)
    class key --AEAD--> per-record class DEK --AEAD--> field values   (vault.envelope)

A slot wraps a random *slot secret*, and the keyring is encrypted under that
secret. Rotation can therefore rewrite every slot's keyring without knowing any
passphrase, and a passphrase change rewraps 32 bytes and touches nothing else.
Later issues add public-key slots that seal a slot secret to a user's X25519 key
and hold only their role's classes.
"""

from __future__ import annotations

import re
import struct
import unicodedata
import weakref
from dataclasses import dataclass, field

from . import _crypto as C
from . import _format as F
from .envelope import Malformed, _lp8
from .errors import IntegrityError, KdfTooWeak, ValidationError, VaultError, WrongPassphrase, utf8

_V = bytes([F.FORMAT_VERSION])
KIND_CLASS_KEY = 1
KIND_META_KEY = 2
KIND_PURPOSE_KEY = 3  # per-purpose pseudonym key (badge, travel, ...)
KIND_LEAD_VK = 4  # the security lead's Ed25519 verify key (public; here so it is authenticated)
KIND_CLASS_PUBLIC = 6  # a class's X25519 public key (name = class), for roles that may write
#                        the class but not read it
KIND_RECOVERY_SEED = 8  # the recovery actor's secret seed (full keyring only): signs and opens
#                         reasons for passphrase openers, stable across passphrase changes
KIND_RECOVERY_VK = 7  # the recovery actor's Ed25519 public key (every keyring: authenticated)
KIND_RECOVERY_BOX = 9  # the recovery actor's X25519 public key (every keyring)
KIND_SLOT_SECRET = 5  # a passphrase slot's secret, in the lead's keyring (name = slot id), so
#                       the lead can re-seal the recovery slot after a rotation

PASS_SLOT_LEN = 2 + F.KID_LEN + 12 + F.SALT_LEN + F.NONCE_LEN + F.KEY_LEN + F.TAG_LEN + F.SLOT_CHECKSUM_LEN


@dataclass(frozen=True, repr=False)
class Key:
    """One versioned key. ``repr`` shows the id, never the key."""

    kind: int
    name: str
    version: int
    kid: bytes
    secret: bytes

    def __repr__(self) -> str:
        return f"<Key {self.name or 'meta'} v{self.version} kid={self.kid.hex()}>"


@dataclass(repr=False)
class Keyring:
    """The keys one slot opens. Holds secrets: never log, pickle or print it."""

    keys: list[Key] = field(default_factory=list)
    #: the keys _class_claims last saw and what it made of them (every signature of the
    #: statement and every check of it lists the claims: twice per add of a managing handle)
    claims_seen: tuple[tuple[Key, ...], dict[str, str]] | None = field(default=None, init=False, compare=False)

    def __repr__(self) -> str:
        return f"<Keyring {len(self.keys)} keys>"

    @classmethod
    def generate(cls, classes: tuple[str, ...] | list[str],
                 purposes: tuple[str, ...] | list[str] = ()) -> Keyring:
        ring = cls()
        ring.keys.append(_new_key(KIND_META_KEY, "", 1))
        for name in classes:
            ring.keys.append(_new_key(KIND_CLASS_KEY, name, 1))
        for name in purposes:
            ring.keys.append(_new_key(KIND_PURPOSE_KEY, name, 1))
        return ring

    def by_kid(self, kid: bytes) -> Key | None:
        for k in self.keys:
            if k.kid == kid:
                return k
        return None

    def current(self, kind: int, name: str = "") -> Key:
        best = None
        for k in self.keys:
            if k.kind == kind and k.name == name and (best is None or k.version > best.version):
                best = k
        if best is None:
            raise KeyError(name)
        return best

    def classes(self) -> set[str]:
        return {k.name for k in self.keys if k.kind == KIND_CLASS_KEY}

    # -- encoding: u16 count, then (u8 kind, u8 len, name, u32 version, kid, key)* --------------
    def to_bytes(self) -> bytes:
        out = [struct.pack(">H", len(self.keys))]
        for k in self.keys:
            out.append(bytes([k.kind]) + _lp8(k.name.encode("ascii")) + struct.pack(">I", k.version)
                       + k.kid + k.secret)
        return b"".join(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> Keyring:
        try:
            (count,) = struct.unpack_from(">H", data, 0)
            pos, keys = 2, []
            for _ in range(count):
                kind, n = data[pos], data[pos + 1]
                name = data[pos + 2:pos + 2 + n].decode("ascii")
                pos += 2 + n
                (version,) = struct.unpack_from(">I", data, pos)
                pos += 4
                kid = data[pos:pos + F.KID_LEN]
                secret = data[pos + F.KID_LEN:pos + F.KID_LEN + F.KEY_LEN]
                pos += F.KID_LEN + F.KEY_LEN
                if len(secret) != F.KEY_LEN or kind not in (KIND_CLASS_KEY, KIND_META_KEY, KIND_PURPOSE_KEY,
                                                            KIND_LEAD_VK, KIND_SLOT_SECRET, KIND_CLASS_PUBLIC,
                                                            KIND_RECOVERY_SEED, KIND_RECOVERY_VK, KIND_RECOVERY_BOX):
                    raise Malformed()
                keys.append(Key(kind, name, version, kid, secret))
        except (struct.error, IndexError, UnicodeDecodeError):
            raise Malformed() from None
        if pos != len(data):
            raise Malformed()
        return cls(keys)


def _new_key(kind: int, name: str, version: int) -> Key:
    return Key(kind, name, version, C.random_bytes(F.KID_LEN), C.random_bytes(F.KEY_LEN))


# -- keyring blobs ----------------------------------------------------------------------------
def seal_keyring(slot_secret: bytes, slot_kid: bytes, vault_id: bytes, ring: Keyring,
                 nonce: bytes | None = None) -> bytes:
    header = _V + F.KIND_KEYRING + slot_kid
    nonce = C.random_bytes(F.NONCE_LEN) if nonce is None else nonce
    return header + nonce + C.aead_seal(slot_secret, nonce, ring.to_bytes(), header + vault_id)


def open_keyring(slot_secret: bytes, vault_id: bytes, blob: bytes) -> Keyring:
    hl = 2 + F.KID_LEN
    if len(blob) < hl + F.NONCE_LEN + F.TAG_LEN or blob[0] != F.FORMAT_VERSION or blob[1:2] != F.KIND_KEYRING:
        raise IntegrityError("key slot keyring is malformed")
    try:
        pt = C.aead_open(slot_secret, blob[hl:hl + F.NONCE_LEN], blob[hl + F.NONCE_LEN:], blob[:hl] + vault_id)
        return Keyring.from_bytes(pt)
    except (C.AuthFailure, Malformed):
        raise IntegrityError("key slot keyring failed authentication") from None


# -- passphrase slots -------------------------------------------------------------------------
def passphrase_bytes(passphrase: str) -> bytes:
    """NFC-normalised UTF-8, so the same passphrase typed on two keyboards unlocks."""
    if not isinstance(passphrase, str) or not passphrase:
        raise ValidationError("passphrase must be a non-empty string")
    return utf8(unicodedata.normalize("NFC", passphrase), "passphrase is not valid UTF-8 text")


def check_kdf(params: F.KdfParams) -> None:
    """Between the floor (a downgrade refused) and the ceiling (a hostile slot's cost that
    would exhaust the machine). A caller's ``kdf=`` is checked here too: anything but a
    KdfParams of whole numbers failed as an AttributeError or a TypeError part way."""
    if not isinstance(params, F.KdfParams) or not all(
            isinstance(x, int) and not isinstance(x, bool) for x in (params.t, params.m_kib, params.p)):
        raise ValidationError("kdf must be a vault.KdfParams(t, m_kib, p) of whole numbers")
    floor, ceil = F.KDF_FLOOR, F.KDF_CEILING
    if params.t < floor.t or params.m_kib < floor.m_kib or params.p < floor.p:
        raise KdfTooWeak(
            f"Argon2id parameters t={params.t} m={params.m_kib}KiB p={params.p} are below the floor "
            f"t={floor.t} m={floor.m_kib}KiB p={floor.p}"
        )
    if params.t > ceil.t or params.m_kib > ceil.m_kib or params.p > ceil.p:
        raise IntegrityError("Argon2id parameters are above the ceiling (corrupt or hostile slot)")


# -- passphrase boxes: a secret under Argon2id(passphrase), as a slot or an identity file ----
_BOX_HEADER_LEN = 2 + F.KID_LEN + 12 + F.SALT_LEN


def seal_passphrase_box(kind: bytes, kid: bytes, passphrase: str, secret: bytes, bind: bytes,
                        params: F.KdfParams, *, salt: bytes | None = None, nonce: bytes | None = None) -> bytes:
    """``header || nonce || AEAD(Argon2id(passphrase), secret, header || bind) || checksum``,
    header = version, kind, key id, t, m, p, salt. ``bind`` (the vault id for a slot, empty
    for an identity file) is authenticated but not stored. The layout of kinds P and U."""
    check_kdf(params)
    salt = C.random_bytes(F.SALT_LEN) if salt is None else salt
    nonce = C.random_bytes(F.NONCE_LEN) if nonce is None else nonce
    header = _V + kind + kid + struct.pack(">III", params.t, params.m_kib, params.p) + salt
    kek = C.argon2id(passphrase_bytes(passphrase), salt, params.t, params.m_kib, params.p)
    body = header + nonce + C.aead_seal(kek, nonce, secret, header + bind)
    return body + _box_checksum(body, bind)


def _box_checksum(body: bytes, bind: bytes) -> bytes:
    # Unkeyed (as in LUKS2 headers): it tells corruption, or a slot pasted from another vault,
    # apart from a wrong passphrase. An attacker can recompute it; the AEAD still fails then.
    return C.sha256(body + bind)[: F.SLOT_CHECKSUM_LEN]


def box_params(blob: bytes) -> F.KdfParams:
    """Cost parameters as stored (for status output); no integrity check."""
    t, m, p = struct.unpack_from(">III", blob, 2 + F.KID_LEN)
    return F.KdfParams(t, m, p)


def open_passphrase_box(kind: bytes, blob: bytes, passphrase: str, bind: bytes, secret_len: int, *,
                        what: str, malformed: type[VaultError] = IntegrityError,
                        wrong: str = "wrong passphrase") -> bytes:
    """The secret of a passphrase box. Framing, checksum, version and kind, then the KDF
    floor and ceiling are checked *before* any Argon2 work. ``what`` names the box in errors;
    ``malformed`` is raised for a wrong size, version or kind."""
    if len(blob) != _BOX_HEADER_LEN + F.NONCE_LEN + secret_len + F.TAG_LEN + F.SLOT_CHECKSUM_LEN:
        raise malformed(f"{what} is malformed or truncated")
    body, checksum = blob[: -F.SLOT_CHECKSUM_LEN], blob[-F.SLOT_CHECKSUM_LEN:]
    if not C.mac_equal(_box_checksum(body, bind), checksum):
        raise IntegrityError(f"{what} checksum mismatch (corrupted{', or from another vault' if bind else ''})")
    if blob[0] != F.FORMAT_VERSION or blob[1:2] != kind:
        raise malformed(f"{what} has an unknown version or kind")
    params = box_params(blob)
    check_kdf(params)
    header, salt = blob[:_BOX_HEADER_LEN], blob[_BOX_HEADER_LEN - F.SALT_LEN:_BOX_HEADER_LEN]
    nonce = blob[_BOX_HEADER_LEN:_BOX_HEADER_LEN + F.NONCE_LEN]
    kek = C.argon2id(passphrase_bytes(passphrase), salt, params.t, params.m_kib, params.p)
    try:
        return C.aead_open(kek, nonce, body[_BOX_HEADER_LEN + F.NONCE_LEN:], header + bind)
    except C.AuthFailure:
        raise WrongPassphrase(wrong) from None


def seal_passphrase_slot(passphrase: str, slot_secret: bytes, slot_kid: bytes, vault_id: bytes,
                         params: F.KdfParams, *, salt: bytes | None = None,
                         nonce: bytes | None = None) -> bytes:
    return seal_passphrase_box(F.KIND_PASSPHRASE_SLOT, slot_kid, passphrase, slot_secret, vault_id, params,
                               salt=salt, nonce=nonce)


def passphrase_slot_params(blob: bytes) -> F.KdfParams:
    if len(blob) != PASS_SLOT_LEN:
        raise IntegrityError("passphrase slot is malformed")
    return box_params(blob)


def open_passphrase_slot(blob: bytes, passphrase: str, vault_id: bytes) -> bytes:
    """Return the slot secret (see :func:`open_passphrase_box`)."""
    return open_passphrase_box(F.KIND_PASSPHRASE_SLOT, blob, passphrase, vault_id, F.KEY_LEN,
                               what="passphrase slot")


def slot_kid(blob: bytes) -> bytes:
    return blob[2:2 + F.KID_LEN]


# -- schema and index-plan authentication -------------------------------------------------
def _meta_msg(label: bytes, header: bytes, vault_id: bytes, text: str) -> bytes:
    return label + header + vault_id + C.sha256(text.encode("utf-8"))


def _mac_meta(kind: bytes, label: bytes, meta: Key, vault_id: bytes, text: str) -> bytes:
    header = _V + kind + meta.kid
    return header + C.hmac_sha256(meta.secret, _meta_msg(label, header, vault_id, text))


def _verify_meta(kind: bytes, label: bytes, what: str, ring: Keyring, vault_id: bytes, text: str,
                 blob: bytes) -> None:
    hl = 2 + F.KID_LEN
    if len(blob) != hl + 32 or blob[0] != F.FORMAT_VERSION or blob[1:2] != kind:
        raise IntegrityError(f"stored {what} MAC is malformed")
    meta = ring.by_kid(blob[2:hl])
    if meta is None or meta.kind != KIND_META_KEY:
        raise IntegrityError(f"stored {what} is signed by an unknown key")
    try:
        C.verify_hmac_sha256(meta.secret, _meta_msg(label, blob[:hl], vault_id, text), blob[hl:])
    except C.AuthFailure:
        raise IntegrityError(f"stored {what} failed authentication (modified in the database?)") from None


def mac_schema(meta: Key, vault_id: bytes, schema_text: str) -> bytes:
    return _mac_meta(F.KIND_SCHEMA_MAC, F.LABEL_SCHEMA_MAC, meta, vault_id, schema_text)


def verify_schema(ring: Keyring, vault_id: bytes, schema_text: str, blob: bytes) -> None:
    _verify_meta(F.KIND_SCHEMA_MAC, F.LABEL_SCHEMA_MAC, "schema", ring, vault_id, schema_text, blob)


def mac_plan(meta: Key, vault_id: bytes, plan_text: str) -> bytes:
    return _mac_meta(F.KIND_PLAN_MAC, F.LABEL_PLAN_MAC, meta, vault_id, plan_text)


def verify_plan(ring: Keyring, vault_id: bytes, plan_text: str, blob: bytes) -> None:
    _verify_meta(F.KIND_PLAN_MAC, F.LABEL_PLAN_MAC, "index plan", ring, vault_id, plan_text, blob)



# -- signatures over the schema and the index plan -------------------------------------------
# Every role holds the meta key, so a MAC alone cannot stop an enrolled user with database
# write access from rewriting the roles. The schema and the index plan are therefore also
# signed by the security lead or the recovery actor, whose public keys each opener finds in
# its own (authenticated) keyring.
SIG_LABELS = {"schema": b"dvault/v1/schema-sig", "plan": b"dvault/v1/index-plan-sig", "keys": F.LABEL_KEYS_SIG}


def signers(ring: Keyring) -> dict[bytes, bytes]:
    """Allowed signer -> Ed25519 public key: b"L" the lead, b"R" the recovery actor."""
    out = {}
    for k in ring.keys:
        if k.kind == KIND_LEAD_VK:
            out[b"L"] = k.secret
        elif k.kind == KIND_RECOVERY_VK:
            out[b"R"] = k.secret
    return out


def sign_text(what: str, vault_id: bytes, text: str, who: bytes, sign) -> bytes:  # type: ignore[no-untyped-def]
    """``who`` and the signature; a C.Signer's is remembered as verified (C.Signer.sign_known):
    the signer reads it back and checks it at its next write."""
    message = SIG_LABELS[what] + vault_id + C.sha256(text.encode("utf-8"))
    return who + (sign.sign_known(message) if isinstance(sign, C.Signer) else bytes(sign(message)))


def verify_text(what: str, ring: Keyring, vault_id: bytes, text: str, blob: bytes) -> None:
    allowed = signers(ring)
    if len(blob) != 1 + C.ED25519_SIG_LEN or blob[:1] not in allowed:
        raise IntegrityError(f"stored {what} carries no valid signature of the lead or the recovery key")
    try:
        message = SIG_LABELS[what] + vault_id + C.sha256(text.encode("utf-8"))
        C.ed25519_verify_again(allowed[blob[:1]], message, blob[1:])
    except C.AuthFailure:
        raise IntegrityError(f"stored {what} failed the lead's signature (edited in the database?)") from None


SLOT_KINDS = ("passphrase", "x25519")  # dv_slots.kind values a statement may name


@dataclass(frozen=True)
class Statement:
    """A key statement's lines other than its keys, as written (parsed, not yet checked).
    ``kind`` 1, 2 or 3 (its header); ``db`` the version it signs (0 for kind 1); ``slots``
    (slot id, kind, hex SHA-256 of its ``unlock`` blob) and ``canaries`` the hex SHA-256 of
    the canary list (kind 3 only)."""

    kind: int
    db: int
    users: str = ""
    canaries: str = ""
    slots: tuple[tuple[str, str, str], ...] = ()
    claims: tuple[tuple[str, str], ...] = ()


def key_statement(ring: Keyring, vault_id: bytes, db_version: int, roster: bytes, *,
                  slots: dict[str, tuple[str, str]], canaries: bytes) -> str:
    """The text the lead (or recovery actor) signs about the vault's keys: the meta key's
    fingerprint (the pin's, vault.pins), the database schema version, the user table's
    digest (users.roster_digest), the SHA-256 of the sealed canary list, every key slot that
    must exist (``slots``: id -> (kind, hex SHA-256 of its unlock blob): a slot edited in
    place, not only one deleted, is then told apart) and, per class, the current version, key id and
    X25519 public key (docs/format.md 9b). Why: a key slot is a sealed box anyone can make,
    and every enrolled user holds the meta key, so nothing but a signature tells a user that
    the class public keys they seal identity and risk data to are the lead's; and the
    version, the user table, the slots and the canary list are stored where a database
    writer can raise or lower the one, put back an older signed copy of the next, delete
    the recovery passphrase's slot or switch the canaries off. Only a holder of every class
    key can write it."""
    from .pins import fingerprint
    lines = [F.KEYS_STATEMENT_HEADER, f"meta {fingerprint(vault_id, ring.current(KIND_META_KEY).secret)}",
             f"db {db_version}", f"users {roster.hex()}", f"canaries {C.sha256(canaries).hex()}"]
    lines += [f"slot {sid} {kind} {digest}" for sid, (kind, digest) in sorted(slots.items())]
    lines += [f"class {name} {claim}" for name, claim in sorted(_class_claims(ring).items())]
    return "\n".join(lines) + "\n"


#: A class key -> its box public key (hex). Every add of the lead's signs the statement
#: again, which names each class's public key: a derivation and a scalar multiplication per
#: class and signature. Weakly keyed: an entry goes with its key (nothing secret is held).
_BOX_PUBLIC: weakref.WeakKeyDictionary[Key, str] = weakref.WeakKeyDictionary()


def _box_public(k: Key) -> str:
    from .envelope import class_box_secret
    got = _BOX_PUBLIC.get(k)
    if got is None:
        got = _BOX_PUBLIC[k] = C.x25519_public(class_box_secret(k.secret)).hex()
    return got


def _class_claims(ring: Keyring) -> dict[str, str]:
    """Class -> "version kid public-key" of the current key of each class held, else of
    its newest public key (a write-only class), as the key statement lists them. A function
    of the ring's keys alone: kept on the ring with the keys it was made from, and made
    afresh whenever they differ (a rotation, a key destroyed)."""
    keys = tuple(ring.keys)
    seen = ring.claims_seen
    if seen is not None and seen[0] == keys:
        return dict(seen[1])
    out = _claims_of(ring)
    ring.claims_seen = (keys, dict(out))
    return out


def _claims_of(ring: Keyring) -> dict[str, str]:
    out = {}
    for name in ring.classes():
        k = ring.current(KIND_CLASS_KEY, name)
        out[name] = f"{k.version} {k.kid.hex()} {_box_public(k)}"
    for name in {k.name for k in ring.keys if k.kind == KIND_CLASS_PUBLIC} - out.keys():
        k = ring.current(KIND_CLASS_PUBLIC, name)
        out[name] = f"{k.version} {k.kid.hex()} {k.secret.hex()}"
    return out


_MALFORMED = "the signed key statement is malformed"
_HEX16, _HEX64 = re.compile(r"[0-9a-f]{16}"), re.compile(r"[0-9a-f]{64}")


#: statement text -> its parsed lines: a managing handle's add parses the statement it read
#: twice (the check, the slots it names). Keyed by the whole text (a pure function of it;
#: nothing secret); only well formed texts are kept; bounded.
_PARSED: dict[str, Statement] = {}
_PARSED_MAX = 16


def parse_statement(text: str) -> Statement:
    """The lines of a key statement of any kind; IntegrityError if it is not well formed.
    Not a check of anything it says (see check_key_statement)."""
    got = _PARSED.get(text)
    if got is None:
        got = _parse_statement(text)
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[text] = got
    return got


def _parse_statement(text: str) -> Statement:
    lines = text.split("\n")
    if len(lines) < 3 or lines[-1] != "" or not lines[1].startswith("meta "):
        raise IntegrityError(_MALFORMED)
    kind = {F.KEYS_STATEMENT_HEADER_V1: 1, F.KEYS_STATEMENT_HEADER_V2: 2, F.KEYS_STATEMENT_HEADER: 3}.get(lines[0])
    if kind is None:
        raise IntegrityError(_MALFORMED)
    db, users, canaries, pos = 0, "", "", 2
    if kind >= 2:
        db_line, users_line = _words(lines, 2), _words(lines, 3)
        if len(db_line) != 2 or db_line[0] != "db" or not re.fullmatch(r"[1-9][0-9]{0,8}", db_line[1]) \
                or len(users_line) != 2 or users_line[0] != "users" or not _HEX64.fullmatch(users_line[1]):
            raise IntegrityError(_MALFORMED)
        db, users, pos = int(db_line[1]), users_line[1], 4
    slots: list[tuple[str, str, str]] = []
    if kind == 3:
        can = _words(lines, 4)
        if len(can) != 2 or can[0] != "canaries" or not _HEX64.fullmatch(can[1]) or db < F.STATEMENT_V3_FROM:
            raise IntegrityError(_MALFORMED)
        canaries, pos = can[1], 5
        while pos < len(lines) - 1 and lines[pos].startswith("slot "):
            parts = lines[pos].split(" ")
            if len(parts) != 4 or not _HEX16.fullmatch(parts[1]) or parts[2] not in SLOT_KINDS \
                    or not _HEX64.fullmatch(parts[3]) or (slots and parts[1] <= slots[-1][0]):
                raise IntegrityError(_MALFORMED)  # sorted by id, each once
            slots.append((parts[1], parts[2], parts[3]))
            pos += 1
    claims: list[tuple[str, str]] = []
    for line in lines[pos:-1]:
        parts = line.split(" ")
        if len(parts) != 5 or parts[0] != "class" or (claims and parts[1] <= claims[-1][0]):
            raise IntegrityError(_MALFORMED)  # sorted by name, each once
        claims.append((parts[1], " ".join(parts[2:])))
    return Statement(kind, db, users, canaries, tuple(slots), tuple(claims))


def _words(lines: list[str], i: int) -> list[str]:
    return lines[i].split(" ") if i < len(lines) - 1 else []


def statement_version(text: bytes | None) -> int | None:
    """The database version a stored statement names, read without checking its signature
    (None: no statement, or one that names none). open() uses it before unlocking to tell a
    version raised in the database from a vault a later release made: the statement of a
    later release names that release's version."""
    try:
        st = parse_statement(text.decode("ascii")) if text else None
    except (UnicodeDecodeError, IntegrityError):
        return None
    return st.db if st is not None and st.kind >= 2 else None


def check_key_statement(ring: Keyring, vault_id: bytes, text: str, signature: bytes, *,
                        db_version: int, roster: bytes, canaries: bytes | None = None) -> int:
    """Refuse a keyring whose meta key or whose current key (or public key) of any class
    is not the one in the signed statement: a substituted key slot (threat model 9); a
    stored database version other than the signed one (lowered, to have an upgrade step
    redone, or raised, to lock everyone out or to have the next signature launder it); a
    user table (``roster``: its users.roster_digest) other than the signed one; a canary
    list (``canaries``: the stored blob) other than the signed one; and a statement of an
    older kind than the version needs (kind 1 from SIGNED_VERSION_FROM, kind 2 from
    STATEMENT_V3_FROM). Returns the signed version (0 for kind 1), so that the lead's open
    knows when to sign again. The slots it names are the signers' to check (vault.statement)."""
    from .pins import fingerprint
    verify_text("keys", ring, vault_id, text, signature)
    st = parse_statement(text)
    older = IntegrityError("the signed key statement is older than this vault (an old copy put back in the "
                           "database?); tell the lead")
    if st.kind == 1 and db_version >= F.SIGNED_VERSION_FROM:
        raise older
    if st.kind >= 2:
        if db_version < st.db:
            raise IntegrityError(f"this vault's database version was lowered (the lead signed v{st.db}, the "
                                 f"database says v{db_version}): the database was edited; tell the lead")
        if db_version > st.db:
            raise IntegrityError(f"this vault's database version was raised (the lead signed v{st.db}, the database "
                                 f"says v{db_version}): the database was edited; the lead's next open restores it, "
                                 "tell the lead")
        if not C.mac_equal(st.users.encode(), roster.hex().encode()):
            raise IntegrityError("the user table is not the one the lead signed last (an older copy put back, or "
                                 "rows edited); do not add records, tell the lead")
    if st.kind == 2 and st.db >= F.STATEMENT_V3_FROM:
        raise older
    if not C.mac_equal(text.split("\n")[1][5:].encode(),
                       fingerprint(vault_id, ring.current(KIND_META_KEY).secret).encode()):
        raise IntegrityError("your meta key is not the one the lead signed: your key slot may have been "
                             "replaced; do not add records, tell the lead")
    claims = dict(st.claims)
    for name, held in sorted(_class_claims(ring).items()):
        if claims.get(name) != held:
            raise IntegrityError(f"your keys for class {name} are not the ones the lead signed: your key slot "
                                 "may have been replaced; do not add records, tell the lead")
    if st.kind == 3 and not C.mac_equal(st.canaries.encode(), C.sha256(canaries or b"").hex().encode()):
        raise IntegrityError("the canary list is not the one the lead signed (replaced, emptied or put back from "
                             "an older copy in the database?); tell the lead")
    return st.db
