"""Users, roles and public-key slots: access control enforced by keys.

Each enrolled user has a key slot of kind ``x25519``: a random slot secret sealed to
their X25519 public key (libsodium sealed box, with the vault id inside so a slot
cannot be moved between vaults) and a keyring holding exactly their role's current
class keys, purpose keys, the meta key and the lead's Ed25519 verify key. Code that
skipped our checks would still hold only those keys.

The user table (id, name, role, public keys, slot id) is signed by the security
lead's Ed25519 key: a database writer cannot enrol themselves, raise a role or attach
a slot to someone unnoticed. The verify key comes from the opener's own
authenticated keyring, so swapping it in the database is detected too.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from . import _crypto as C
from . import _format as F
from . import keys as K
from .envelope import _lp8
from .errors import AccessDenied, IntegrityError, ValidationError, utf8
from .identity import Identity, PublicIdentity
from .schema import Role

_V = bytes([F.FORMAT_VERSION])
KIND_USER_SLOT = b"X"
KIND_X25519 = "x25519"  # dv_slots.kind of a user slot
REVOKED = "revoked"  # role of a removed user: kept (signed) so their audit entries still verify
ROSTER_LABEL = b"dvault/v1/roster"


@dataclass(frozen=True)
class User:
    user_id: str
    name: str
    role: str
    public: PublicIdentity
    slot_id: str

    def __repr__(self) -> str:
        return f"<User {self.user_id} {self.name!r} role={self.role}>"


_HEX_ID = re.compile(r"[0-9a-f]{16}")  # user ids and slot ids: hex of 8 bytes


def from_row(user_id: object, name: object, role: object, public: bytes, slot_id: object) -> User:
    """One dv_users row as a User, or IntegrityError. Why before the roster signature is
    checked: that check needs the rows in their canonical form (text of at most 255 UTF-8
    bytes, hex ids), and a row a database writer edited may hold anything (SQLite keeps any
    type in any column), which made the signed bytes themselves fail to build."""
    if len(public) != 64:
        raise IntegrityError("user table holds a malformed public key")
    if not (is_hex_id(user_id) and is_hex_id(slot_id) and _is_lp8_text(name) and _is_lp8_text(role)):
        raise IntegrityError("user table holds a malformed row (edited in the database)")
    assert isinstance(user_id, str) and isinstance(name, str) and isinstance(role, str) and isinstance(slot_id, str)
    return User(user_id, name, role, PublicIdentity(public[:32], public[32:]), slot_id)


def is_hex_id(x: object) -> bool:
    """A user, slot or request id as stored: the lower-case hex of 8 bytes."""
    return isinstance(x, str) and _HEX_ID.fullmatch(x) is not None


def _is_lp8_text(x: object) -> bool:
    try:
        return isinstance(x, str) and 0 < len(x.encode("utf-8")) <= 255
    except UnicodeEncodeError:
        return False


def check_name(name: object) -> str:
    """A user's name or handle as the user table keeps it (stripped, 1-200 characters)."""
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise ValidationError("a user needs a short name or handle (1-200 characters)")
    size = len(utf8(name.strip(), "a user's name must be valid UTF-8 text"))
    if size > 255 or any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name):
        raise ValidationError("a user's name must be plain text of at most 255 UTF-8 bytes")
    return name.strip()


def seal_user_slot(public: PublicIdentity, slot_secret: bytes, slot_kid: bytes, vault_id: bytes) -> bytes:
    return _V + KIND_USER_SLOT + slot_kid + C.seal_to(public.x25519, vault_id + slot_secret)


def open_user_slot(blob: bytes, identity: Identity, vault_id: bytes) -> bytes:
    hl = 2 + F.KID_LEN
    if len(blob) != hl + C.SEALED_OVERHEAD + F.ID_LEN + F.KEY_LEN or blob[:2] != _V + KIND_USER_SLOT:
        raise IntegrityError("user key slot is malformed")
    try:
        plain = identity.unseal(blob[hl:])
    except C.AuthFailure:
        raise AccessDenied("this identity cannot open its key slot (revoked, or slot replaced)") from None
    if plain[:F.ID_LEN] != vault_id:
        raise IntegrityError("user key slot belongs to another vault")
    return plain[F.ID_LEN:]


def role_keyring(full: K.Keyring, role: Role, lead_vk: bytes) -> K.Keyring:
    """The subset of ``full`` a role holds: current class and purpose keys, meta key, lead key."""
    keys = [full.current(K.KIND_META_KEY)]
    # Every version of the role's classes: during a rotation old versions still wrap some
    # DEKs; they leave with the rotation's last step, when every slot is re-sealed.
    keys += [k for k in full.keys if k.kind == K.KIND_CLASS_KEY and k.name in role.classes]
    keys += [full.current(K.KIND_PURPOSE_KEY, p) for p in role.purposes]
    keys.append(K.Key(K.KIND_LEAD_VK, "lead", 1, bytes(F.KID_LEN), lead_vk))
    keys += [k for k in full.keys if k.kind in (K.KIND_RECOVERY_VK, K.KIND_RECOVERY_BOX)]
    # Classes the role may write but not read: only their public keys (kind E envelopes).
    from .envelope import class_box_secret
    for k in full.keys:
        if k.kind == K.KIND_CLASS_KEY and k.name in role.write_only \
                and k.version == full.current(K.KIND_CLASS_KEY, k.name).version:
            keys.append(K.Key(K.KIND_CLASS_PUBLIC, k.name, k.version, k.kid,
                              C.x25519_public(class_box_secret(k.secret))))
    if role.manage:  # the lead holds the full keyring: it re-seals the recovery slot after rotations
        keys += [k for k in full.keys if k.kind in (K.KIND_SLOT_SECRET, K.KIND_RECOVERY_SEED)]
    return K.Keyring(keys)


def roster_bytes(vault_id: bytes, users: list[User]) -> bytes:
    """Canonical bytes the lead signs: every user row, sorted by id."""
    out = [ROSTER_LABEL, vault_id, len(users).to_bytes(4, "big")]
    for u in sorted(users, key=lambda u: u.user_id):
        out += [_lp8(u.user_id.encode()), _lp8(u.name.encode()), _lp8(u.role.encode()), u.public.raw,
                _lp8(u.slot_id.encode())]
    return b"".join(out)


def roster_digest(vault_id: bytes, users: list[User]) -> bytes:
    """What the signed key statement names of the user table (its ``users`` line): the
    roster signature alone cannot tell the current table from an older one the lead signed."""
    return C.sha256(roster_bytes(vault_id, users))


def verify_roster(lead_vk: bytes, vault_id: bytes, users: list[User], signature: bytes) -> None:
    try:
        C.ed25519_verify_again(lead_vk, roster_bytes(vault_id, users), signature)
    except C.AuthFailure:
        raise IntegrityError("user table failed the lead's signature (users, roles or slots edited)") from None
