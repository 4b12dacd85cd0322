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
                 codec: Any = None, failed: list[bytes] | None = None) -> int:
    """Rewrap the sealed DEKs that ``pick`` selects into ordinary kind-D wraps under the class
    key each was sealed to (same DEK, same cells, no re-encryption); returns how many.

    Two callers. The upgrade to database schema v5 adopts the unsigned kind-E DEKs of older
    releases as they are (as a rotation always did), after which readers refuse kind E. The
    revocation of a writer adopts their kind-W DEKs, signature checked first, so that no
    envelope a reader accepts rests on a signer who no longer counts. Raises IntegrityError
    if one fails, or if its class key is not among ``class_keys``. ``codec``
    (vault.compact.Codec): how rows of record format 2 are framed; without it, only rows of
    format 1 are understood (the upgrade to v5 runs before any format-2 row can exist).

    ``failed`` (the revocation): instead of raising, append the id of each record whose row or
    picked envelope fails, and leave it as it is. Such an envelope reads as nothing already
    (readers refuse it), and once its signer is revoked no signature on it counts either; a
    database writer must not be able to stop a revocation by planting one."""
    todo = []
    for rid, data in store.scan_records(conn):
        try:
            envs = codec.unpack(data) if codec is not None else E.unpack_record(data)
            hit = [c for c, (dek, _) in envs.items() if (h := E.parse_dek_header(dek)).sealed and pick(h)]
        except E.Malformed:
            if failed is None:
                raise IntegrityError("record row is malformed", record_id=rid.hex()) from None
            failed.append(rid)
            continue
        if hit:
            todo.append((rid, data, envs, hit))
    adopted = 0
    for rid, data, envs, hit in todo:
        done = 0
        for c in hit:
            try:
                envs[c] = _adopted(vault_id, class_keys, rid, c, data, envs[c], writers, codec)
                done += 1
            except IntegrityError:
                if failed is None:
                    raise
                failed.append(rid)
        if not done:
            continue
        adopted += done
        if codec is not None:
            store.put_record(conn, rid, codec.pack(codec.writes(data), envs))
        else:
            store.put_record(conn, rid, E.pack_record([(c, dek, cells) for c, (dek, cells) in envs.items()]))
    return adopted


def _adopted(vault_id: bytes, class_keys: dict[bytes, K.Key], rid: bytes, c: str, data: bytes,
             env: tuple[bytes, bytes], writers: E.WriterKeys | None, codec: Any) -> tuple[bytes, bytes]:
    """One sealed envelope's DEK, checked and rewrapped (kind D) under its class key; its cells
    as they are. Raises IntegrityError."""
    dek_blob, cells = env
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
    return E.wrap_dek(C.Aead(key.secret), key.kid, key.version, hdr.dek_id, dek, vault_id, rid, c, names), cells
