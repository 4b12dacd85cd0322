"""Adopting sealed DEKs into ordinary wraps (docs/format.md 6): the upgrade to database
schema v5 (unsigned kind-E DEKs) and the revocation of a writer (their kind-W DEKs)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import _crypto as C
from . import envelope as E
from . import keys as K
from .errors import IntegrityError


def adopt_sealed(store: Any, conn: Any, vault_id: bytes, class_keys: dict[bytes, K.Key],
                 pick: Callable[[E.DekHeader], bool], writers: E.WriterKeys | None = None,
                 codec: Any = None) -> int:
    """Rewrap the sealed DEKs that ``pick`` selects into ordinary kind-D wraps under the class
    key each was sealed to (same DEK, same cells, no re-encryption); returns how many.

    Two callers. The upgrade to database schema v5 adopts the unsigned kind-E DEKs of older
    releases as they are (as a rotation always did), after which readers refuse kind E. The
    revocation of a writer adopts their kind-W DEKs, signature checked first, so that no
    envelope a reader accepts rests on a signer who no longer counts. Raises IntegrityError
    if one fails, or if its class key is not among ``class_keys``. ``codec``
    (vault.compact.Codec): how rows of record format 2 are framed; without it, only rows of
    format 1 are understood (the upgrade to v5 runs before any format-2 row can exist)."""
    todo = []
    for rid, data in store.scan_records(conn):
        try:
            envs = codec.unpack(data) if codec is not None else E.unpack_record(data)
            hit = [c for c, (dek, _) in envs.items() if (h := E.parse_dek_header(dek)).sealed and pick(h)]
        except E.Malformed:
            raise IntegrityError("record row is malformed", record_id=rid.hex()) from None
        if hit:
            todo.append((rid, data, envs, hit))
    for rid, data, envs, hit in todo:
        for c in hit:
            dek_blob, cells = envs[c]
            hdr = E.parse_dek_header(dek_blob)
            key = class_keys.get(hdr.class_kid)
            if key is None or key.name != c:
                raise IntegrityError(f"sealed class {c!r} envelopes must be adopted by someone holding that "
                                     "class: the security lead must open this vault first")
            try:
                names = codec.cell_names(data, cells) if codec is not None else tuple(E.unpack_cells(cells))
                dek = E.unseal_dek(E.class_box_secret(key.secret), key.version, vault_id, rid, c, names, dek_blob,
                                   writers, legacy=not hdr.writer)
            except (C.AuthFailure, E.Malformed):
                raise IntegrityError(f"class {c!r} data key failed authentication", record_id=rid.hex()) from None
            envs[c] = (E.wrap_dek(C.Aead(key.secret), key.kid, key.version, hdr.dek_id, dek, vault_id, rid, c, names),
                       cells)
        if codec is not None:
            store.put_record(conn, rid, codec.pack(codec.writes(data), envs))
        else:
            store.put_record(conn, rid, E.pack_record([(c, dek, cells) for c, (dek, cells) in envs.items()]))
    return sum(len(hit) for _, _, _, hit in todo)
