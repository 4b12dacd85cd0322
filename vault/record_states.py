"""Record states of the second kind (docs/format.md 13a, "Record states"): what an audit
entry names of the rows it writes, so that the lead's record check can compare rows with
the log.

Why per class and over the envelope's bytes: a state over the row's DEK ids alone (the
first kind) stays the same when content is sealed again under a DEK id the row already
holds (formats 2 and 3 derive the DEK from the class key and that id, so any holder of the
class key can), and it does not say which class an update changed, so a colleague who may
update one class could vouch for a rolled-back envelope of another. A *part* names one
class's envelope (its DEK id and every byte after its key: cells and tags, which a rewrap
keeps); the *token* names the row: its record's tag, then a MAC of its parts in schema
order (the tag ties every state to one record: a colleague's "shred" that deletes nothing
and "add" of a mixed row under the same record do not add up to a logged row). An update's
entry carries the parts before and after, so the check can recompute both MACs and see
which classes changed; everything else carries tokens only (a batch of a hundred thousand rows stays
small). The key derives from the meta key: the log cannot be matched to rows without it.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence

from . import _crypto as C
from . import _format as F
from . import envelope as E

#: A token of the second kind: the record's tag (12 bytes) and the row's MAC (24 bytes),
#: base64url without padding: 48 characters, the tag the first 16 (the first kind's are 24
#: lower-case hex characters). Base64 and not hex: an import names every new row's token,
#: and that entry is about a twentieth of the vault's bytes.
TOKEN_V2 = re.compile(r"[A-Za-z0-9_-]{48}")
TOKEN_V1 = re.compile(r"[0-9a-f]{24}")
_PART = re.compile(f"[0-9a-f]{{{2 * F.STATE_PART_LEN}}}")  # a part in an update's entry: hex
TAG_CHARS = 4 * F.STATE_TAG_LEN // 3


def b64(raw: bytes) -> str:
    """base64url, no padding (the lengths here are multiples of 3: none is needed)."""
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def record_of(token: str) -> str:
    """The record tag a token of the second kind starts with."""
    return token[:TAG_CHARS]


def state_key_v2(meta_key: bytes) -> bytes:
    """The key of the second kind's parts and tokens."""
    return C.hkdf_sha256(meta_key, F.LABEL_RECORD_STATE_V2)


def envelope_bodies(data: bytes, classes: Sequence[str]) -> list[tuple[str, bytes, bytes]]:
    """(class, DEK id, body) of each envelope, in schema order; the body is every byte of
    the envelope after its key (format 1: the cells container), so a rewrap, which only
    replaces the key, keeps it. Framing only. Raises envelope.Malformed."""
    envs = E.row_envelopes(data, tuple(classes))
    if set(envs) != set(classes):
        raise E.Malformed()
    return [(c, E.parse_dek_header(envs[c][0]).dek_id, envs[c][1]) for c in classes]


class States:
    """The second kind's parts and tokens under one key, for one vault; keyed once."""

    __slots__ = ("_prf", "_vid", "_classes", "_names")

    def __init__(self, key: bytes, vault_id: bytes, classes: Sequence[str]) -> None:
        self._prf = C.Prf(key)
        self._vid = vault_id
        self._classes = tuple(classes)
        self._names = [bytes([len(c)]) + c.encode("ascii") for c in self._classes]  # lp8(class)

    def __repr__(self) -> str:
        return "<States>"

    def parts(self, record_id: bytes, data: bytes) -> list[bytes]:
        """One part per class, in schema order. Raises envelope.Malformed."""
        return self._parts(record_id, [dek_id + body for _, dek_id, body in envelope_bodies(data, self._classes)])

    def _parts(self, record_id: bytes, bodies: Sequence[bytes]) -> list[bytes]:
        head, prf = b"part" + self._vid + record_id, self._prf
        return [prf(head + name + b)[:F.STATE_PART_LEN] for name, b in zip(self._names, bodies, strict=True)]

    def token_of_bodies(self, record_id: bytes, bodies: Sequence[bytes]) -> str:
        """The token of a row a writer just sealed, from each class's ``dek_id || body`` in
        schema order (compact.Codec.batch_sealer hands them over: no parsing)."""
        return self.token_of(record_id, self._parts(record_id, bodies))

    def mac_of(self, parts: Sequence[bytes]) -> str:
        """The row's MAC from its parts (schema order), as a token ends: no record id
        needed, each part binds it already, so a checker can recompute an update's MACs
        from its entry."""
        return b64(self._prf(b"row" + self._vid + b"".join(parts))[:F.STATE_MAC_LEN])

    def tag(self, record_id: bytes) -> str:
        """The record's tag, as a token starts: what ties a state to its record in the log
        (an add must name a new record, an update or a shred one added and not shredded)."""
        return b64(self._prf(b"rec" + self._vid + record_id)[:F.STATE_TAG_LEN])

    def token_of(self, record_id: bytes, parts: Sequence[bytes]) -> str:
        """The row's token: the record's tag, then the MAC of its parts."""
        return self.tag(record_id) + self.mac_of(parts)

    def token(self, record_id: bytes, data: bytes) -> str:
        """The row's token. Raises envelope.Malformed."""
        return self.token_of(record_id, self.parts(record_id, data))

    def named_parts(self, record_id: bytes, data: bytes) -> dict[str, str]:
        """Class -> part (hex), as an update's entry carries them."""
        return self.named(self.parts(record_id, data))

    def named(self, parts: Sequence[bytes]) -> dict[str, str]:
        """:meth:`named_parts` from parts already computed."""
        return {c: p.hex() for c, p in zip(self._classes, parts, strict=True)}

    def mac_of_named(self, named: object) -> str | None:
        """The MAC of an entry's ``was`` or ``now`` (class -> part, hex), or None if it is
        not exactly one well-formed part per class."""
        if not isinstance(named, Mapping) or set(named) != set(self._classes):
            return None
        parts = [named[c] for c in self._classes]
        if not all(isinstance(p, str) and _PART.fullmatch(p) for p in parts):
            return None
        return self.mac_of([bytes.fromhex(p) for p in parts])
