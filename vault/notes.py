"""Sealed notes: text only one key holder may read (reasons, break-glass values).

A note is a libsodium sealed box behind the blob header every other blob carries
(docs/format.md section 8b), so a reader knows the format version and *whose* key the
box was sealed to before it tries to open it: after the lead's identity or the vault's
recovery key changes, an old note says which key it needs instead of failing blindly.
A sealed box has no associated data, so the header is repeated inside the plaintext
and checked on opening: a header edited on disk does not open.

Headerless notes (bare sealed boxes, docs/format.md 8b) are still read: :func:`open_note`
falls back to them, and since a sealed box is authenticated, trying both readings can
never return the wrong text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from . import _crypto as C
from . import _format as F

HEADER_LEN = 2 + F.KID_LEN


def recipient_id(public_raw: bytes) -> bytes:
    """The key id of a public identity (X25519 || Ed25519): its user id, as bytes."""
    return C.sha256(F.LABEL_USER_ID + public_raw)[:F.KID_LEN]


def header(kind: bytes, rid: bytes) -> bytes:
    if len(kind) != 1 or len(rid) != F.KID_LEN:
        raise ValueError("a note header is one kind byte and an 8-byte recipient id")
    return bytes([F.FORMAT_VERSION]) + kind + rid


def seal_note(kind: bytes, x25519_public: bytes, rid: bytes, plaintext: bytes) -> bytes:
    """``header || sealed_box(recipient, header || plaintext)``."""
    head = header(kind, rid)
    return head + C.seal_to(x25519_public, head + plaintext)


def open_note(kind: bytes, blob: bytes, unseal: Callable[[bytes], bytes]) -> bytes:
    """The plaintext of a note of this kind (or of a headerless note).

    ``unseal`` opens a sealed box with the reader's X25519 secret and raises
    C.AuthFailure when it cannot. Raises C.AuthFailure if neither reading opens."""
    return open_note_as((kind,), blob, unseal)[1]


def open_note_as(kinds: Sequence[bytes], blob: bytes, unseal: Callable[[bytes], bytes]) -> tuple[bytes, bytes]:
    """(kind, plaintext) of a note of one of ``kinds``; kind b"" for a headerless note. The
    caller learns which form opened, so a kind whose body is padded is unpadded exactly when
    its header opened (a headerless box may begin with any two bytes)."""
    if len(blob) > HEADER_LEN and blob[0] == F.FORMAT_VERSION and blob[1:2] in kinds:
        try:
            plain = unseal(blob[HEADER_LEN:])
        except C.AuthFailure:
            plain = b""
        if plain[:HEADER_LEN] == blob[:HEADER_LEN] and len(plain) >= HEADER_LEN:
            return blob[1:2], plain[HEADER_LEN:]
    return b"", unseal(blob)  # the headerless form (or an AuthFailure)
