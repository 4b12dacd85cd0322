"""Blind-index buckets as ``dv_index`` stores them (docs/format.md 10): the record-id
prefixes of one (generation, index, value) bucket, concatenated, at most
F.INDEX_CHUNK_IDS[width] of them to a row. A generation's prefix width is its plan's ``id_bytes`` (8 from
plan version 3, the whole 16-byte id before): the caller passes gen -> width."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from . import _crypto as C
from . import _format as F
from .errors import IntegrityError

ID_BYTES = F.ID_LEN


Bucket = tuple[int, str, int]  # (gen, index name, value)
Widths = Mapping[int, int]  # generation -> bytes of each record id its rows store


def group_terms(terms: Iterable[tuple[int, str, int, bytes]]) -> dict[Bucket, bytes]:
    """Index terms (gen, name, value, record id) as bucket -> concatenated whole ids: the
    compact form a worker sends back (a few hundred buckets instead of thousands of tuples)."""
    buckets: dict[Bucket, list[bytes]] = {}
    for gen, name, value, rid in terms:
        got = buckets.get((gen, name, value))
        if got is None:
            buckets[(gen, name, value)] = [rid]
        else:
            got.append(rid)
    return {key: b"".join(ids) for key, ids in buckets.items()}


def pack_index(groups: Mapping[Bucket, Iterable[bytes]], widths: Widths) -> list[tuple[int, str, int, bytes, bytes]]:
    """dv_index rows (gen, name, value, chunk, ids) for bucket -> concatenated-whole-id parts:
    per bucket the distinct prefixes (``widths[gen]`` bytes of each id) in ascending order,
    F.INDEX_CHUNK_IDS[width] of them to a row, each row under a fresh random chunk id; rows in key
    order (B-tree appends)."""
    rows = []
    n = ID_BYTES
    for (gen, name, value), parts in groups.items():
        w = widths[gen]
        cap = F.INDEX_CHUNK_IDS[w]
        blob = b"".join(parts)
        if len(blob) == n:  # one id (a single add, or a sparse bucket of a batch)
            rows.append((gen, name, value, blob[:w]))
            continue
        ids = sorted({blob[i:i + w] for i in range(0, len(blob), n)})
        for i in range(0, len(ids), cap):
            rows.append((gen, name, value, b"".join(ids[i:i + cap])))
    k = F.INDEX_CHUNK_ID_LEN
    chunks = C.random_bytes(k * len(rows))  # one CSPRNG call for every row's chunk id
    out = [(gen, name, value, chunks[j * k:j * k + k], ids) for j, (gen, name, value, ids) in enumerate(rows)]
    out.sort()
    return out


def pack_terms(terms: Iterable[tuple[int, str, int, bytes]],
               widths: Widths) -> list[tuple[int, str, int, bytes, bytes]]:
    """Index terms (gen, name, value, record id) as dv_index rows: :func:`pack_index` of
    :func:`group_terms`."""
    return pack_index({key: (ids,) for key, ids in group_terms(terms).items()}, widths)


def split_ids(blob: bytes, width: int = ID_BYTES) -> list[bytes]:
    """The record-id prefixes (``width`` bytes each) of one dv_index row; a row that is not
    whole prefixes has been tampered with."""
    if not blob or len(blob) % width:
        raise IntegrityError("the blind index holds a malformed row (tampering?): rebuild it with reindex()")
    return [blob[i:i + width] for i in range(0, len(blob), width)]


def _holds(blob: bytes, rid: bytes, width: int = ID_BYTES) -> bool:
    """Is ``rid`` (``width`` bytes) one of the aligned prefixes in ``blob``? bytes.find,
    then an alignment check."""
    at = blob.find(rid)
    while at >= 0:
        if at % width == 0:
            return True
        at = blob.find(rid, at + 1)
    return False


def prefix_range(prefix: bytes) -> tuple[bytes, bytes]:
    """The lowest and highest 16-byte record id that starts with ``prefix``: a range on the
    primary key of dv_records, which both databases answer from its index."""
    pad = ID_BYTES - len(prefix)
    return prefix + b"\x00" * pad, prefix + b"\xff" * pad
