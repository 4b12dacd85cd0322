"""The blind-index rows of a :class:`vault.store.Store`: writing, looking up and removing
record-id prefixes in ``dv_index`` (docs/format.md §10 "Stored rows").

A generation's rows store the first ``w`` bytes of each record id, ``w`` its plan's width
(8 from plan version 3, 16 before): callers pass gen -> width from their verified plans.
A prefix found in a bucket stands for every record whose id starts with it (a range on
the primary key of ``dv_records``); a search decrypts every candidate and keeps only the
real matches, so a prefix shared by two records only costs a decryption. For the same
reason a prefix is removed from a bucket only once no other record present has it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy.engine import Connection

from .buckets import ID_BYTES, Bucket, Widths, _holds, pack_index, pack_terms, prefix_range, split_ids
from .errors import IntegrityError
from .store_errors import StoreError

_FEW_ROWS = 32  # up to this many rows of an insert (a single add's) go through raw_many
_RANGES = 100  # prefix ranges per statement (SQLite allows 500 terms in a compound SELECT)


def _blob(x: Any) -> bytes:
    """A BLOB column's value as bytes. A row edited to hold text is tampering: it is turned
    into bytes so that the check that follows (a MAC, a signature, a parser) names it."""
    if isinstance(x, (bytes, bytearray, memoryview)):
        return bytes(x)
    if isinstance(x, str):
        return x.encode("utf-8", "surrogatepass")
    raise IntegrityError(f"a stored value has the wrong type ({type(x).__name__}): the database was edited")


def _rid(x: Any) -> bytes:
    """A dv_records id read back: 16 bytes (a BLOB column, so through _blob), else the row
    was edited, and every caller would have failed on it in its own way (``rid.hex()``)."""
    if type(x) is bytes and len(x) == ID_BYTES:
        return x
    rid = _blob(x)
    if len(rid) != ID_BYTES:
        raise IntegrityError("a record row has a malformed id: the database was edited")
    return rid


def _width(widths: Widths, gen: int) -> int:
    w = widths.get(gen)
    if w is None:
        raise StoreError(f"no plan names index generation {gen}")
    return w


class IndexRows:
    """The dv_index methods of :class:`vault.store.Store` (which provides ``raw``,
    ``raw_many``, ``is_sqlite`` and ``_ph``)."""

    is_sqlite: bool
    _ph: str

    def raw(self, conn: Connection, sql: str, params: tuple[Any, ...] = ()) -> Any:  # provided by Store
        raise NotImplementedError

    def raw_many(self, conn: Connection, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:  # provided by Store
        raise NotImplementedError

    def _index_sql(self, ph: str) -> None:
        bucket = f"gen = {ph} AND name = {ph} AND value = {ph}"
        self._lookup_sql = f"SELECT ids FROM dv_index WHERE {bucket}"
        self._bucket_sql = f"SELECT chunk, ids FROM dv_index WHERE {bucket}"
        # compare-and-set on the chunk's ids: a concurrent writer (PostgreSQL) makes it miss
        self._set_chunk_sql = f"UPDATE dv_index SET ids = {ph} WHERE {bucket} AND chunk = {ph} AND ids = {ph}"
        self._drop_chunk_sql = f"DELETE FROM dv_index WHERE {bucket} AND chunk = {ph} AND ids = {ph}"
        # rows whose ids may hold a record: a byte search in the database, not a row-by-row
        # scan in Python (unaligned hits are weeded out by _holds)
        contains = f"instr(ids, {ph}) > 0" if ph == "?" else f"position({ph}::bytea in ids) > 0"
        self._holding_sql = f"SELECT gen, name, value, ids FROM dv_index WHERE {contains}"
        self._insert_index_sql = ("INSERT INTO dv_index (gen, name, value, chunk, ids) "
                                  f"VALUES ({ph}, {ph}, {ph}, {ph}, {ph})")
        self._range_sql = (f"SELECT id, data FROM dv_records WHERE id >= {ph} AND id <= {ph} "
                           f"AND length(id) = {ID_BYTES}")
        # whole ids only: a row of another length (a hostile edit) sorts inside a prefix's
        # range too. It is no record: not a search's candidate (a lookup by whole ids never
        # reached it), and it neither shares a prefix nor, by filling the LIMIT of
        # shared_prefixes, hides a record that does (nor does a shred stop on it)
        self._range_ids_sql = (f"SELECT id FROM dv_records WHERE id >= {ph} AND id <= {ph} "
                               f"AND length(id) = {ID_BYTES}")

    # -- writing ------------------------------------------------------------------------------
    def insert_index(self, conn: Connection, rows: list[tuple[int, str, int, bytes]], widths: Widths) -> None:
        """Store index terms (gen, name, value, record id): one row per bucket touched."""
        self.insert_index_rows(conn, pack_terms(rows, widths))

    def insert_index_groups(self, conn: Connection, groups: Mapping[Bucket, Iterable[bytes]], widths: Widths) -> None:
        """Store bucket -> concatenated-id parts (see group_terms), each bucket as few rows
        as it takes; a caller writing many records passes them all at once (add_many does)."""
        self.insert_index_rows(conn, pack_index(groups, widths))

    def insert_index_rows(self, conn: Connection, rows: list[tuple[int, str, int, bytes, bytes]]) -> None:
        """Store dv_index rows already built by :func:`pack_index` (e.g. by workers)."""
        if 0 < len(rows) <= _FEW_ROWS:  # a single add's: as insert_records
            self.raw_many(conn, self._insert_index_sql, rows)
        elif rows:
            conn.exec_driver_sql(self._insert_index_sql, rows)

    # -- removing -----------------------------------------------------------------------------
    def delete_index_terms(self, conn: Connection, rows: list[tuple[int, str, int, bytes]], widths: Widths) -> None:
        """Remove these (gen, name, value, record id) terms (only their buckets are read): each
        id's prefix leaves its bucket unless another record present, not one of these
        terms' records, has an id with that prefix (it may be that record's term too)."""
        rids = {rid for *_k, rid in rows}
        gone: dict[Bucket, set[bytes]] = {}
        for gen, name, value, rid in rows:
            gone.setdefault((gen, name, value), set()).add(rid[:_width(widths, gen)])
        shared = self.shared_prefixes(conn, {p for ps in gone.values() for p in ps}, rids)
        for key, prefixes in gone.items():
            self._remove_ids(conn, key, prefixes - shared, _width(widths, key[0]))

    def drop_index_entries(self, conn: Connection, rows: Iterable[tuple[int, str, int, bytes]],
                           widths: Widths) -> None:
        """Remove these (gen, name, value, prefix) entries whatever records share the prefix
        (a repair, which knows every entry the records give)."""
        gone: dict[Bucket, set[bytes]] = {}
        for gen, name, value, prefix in rows:
            gone.setdefault((gen, name, value), set()).add(prefix)
        for key, prefixes in gone.items():
            self._remove_ids(conn, key, prefixes, _width(widths, key[0]))

    def delete_index(self, conn: Connection, rid: bytes, widths: Widths) -> None:
        """Remove one record from every bucket of the generations ``widths`` names, wherever
        it is, unless another record present shares its prefix there. The whole index is
        searched, not only the buckets of its terms: those need the record's plaintext (a
        shredder may hold only write keys), and a bucket the terms missed would keep it.
        Rows of a generation no plan names are no reader's; verify reports them."""
        narrow = min(widths.values(), default=ID_BYTES)  # every width's prefix starts with it
        rows = self.raw(conn, self._holding_sql, (rid[:narrow],)).fetchall()
        hits = set()
        for g, n, v, ids in rows:
            w = widths.get(int(g))
            if w is not None and _holds(_blob(ids), rid[:w], w):
                hits.add((int(g), str(n), int(v)))
        shared = self.shared_prefixes(conn, {rid[:widths[g]] for g, _n, _v in hits}, {rid})
        for key in sorted(hits):
            w = widths[key[0]]
            if rid[:w] not in shared:
                self._remove_ids(conn, key, {rid[:w]}, w)

    def shared_prefixes(self, conn: Connection, prefixes: set[bytes], excluding: set[bytes]) -> set[bytes]:
        """The prefixes (shorter than an id) that the id of some record present, other than
        ``excluding``, starts with. A whole id is shared by no other record."""
        out = set()
        for p in sorted(p for p in prefixes if len(p) < ID_BYTES):
            found = self.raw(conn, self._range_ids_sql + f" LIMIT {len(excluding) + 1}", prefix_range(p)).fetchall()
            if any(_rid(r[0]) not in excluding for r in found):
                out.add(p)
        return out

    def _remove_ids(self, conn: Connection, key: Bucket, prefixes: set[bytes], width: int) -> None:
        """Rewrite (or drop) each chunk of one bucket that holds any of ``prefixes``; a chunk
        that changed under us (another writer, PostgreSQL) is re-read and tried again."""
        if not prefixes:
            return
        for _ in range(100):
            missed = False
            for chunk, ids in self.raw(conn, self._bucket_sql, key).fetchall():
                chunk, ids = _blob(chunk), _blob(ids)
                kept = [i for i in split_ids(ids, width) if i not in prefixes]
                if len(kept) * width == len(ids):
                    continue
                if kept:
                    n = self.raw(conn, self._set_chunk_sql, (b"".join(kept), *key, chunk, ids)).rowcount
                else:
                    n = self.raw(conn, self._drop_chunk_sql, (*key, chunk, ids)).rowcount
                missed |= n != 1
            if not missed:
                return
        raise StoreError("the blind index keeps changing under this write; try again")

    def delete_index_gen(self, conn: Connection, keep: int) -> None:
        """Drop every row of any generation but ``keep``."""
        self.raw(conn, f"DELETE FROM dv_index WHERE gen <> {self._ph}", (keep,))

    # -- looking up ---------------------------------------------------------------------------
    def lookup_index(self, conn: Connection, gen: int, terms: list[tuple[str, int]], width: int) -> list[bytes]:
        """Record-id prefixes (``width`` bytes: the generation's) in every (index name, value)
        bucket of ``terms``: an AND of blind indexes."""
        ids: set[bytes] | None = None
        for name, value in terms:
            found: set[bytes] = set()
            for (blob,) in self.raw(conn, self._lookup_sql, (gen, name, value)).fetchall():
                found.update(split_ids(_blob(blob), width))
            ids = found if ids is None else ids & found
            if not ids:
                return []
        return sorted(ids or ())

    def records_by_prefix(self, conn: Connection, prefixes: list[bytes]) -> list[tuple[bytes, bytes]]:
        """The rows (id, data), sorted, of every record whose id starts with one of
        ``prefixes`` (all of one width): one statement per _RANGES prefixes, each prefix a
        range on the primary key (a UNION ALL of ranges: each arm an index range on both
        databases, where an OR of ranges may become a scan)."""
        out: list[tuple[bytes, bytes]] = []
        for i in range(0, len(prefixes), _RANGES):
            part = prefixes[i:i + _RANGES]
            sql = " UNION ALL ".join([self._range_sql] * len(part))
            params = tuple(b for p in part for b in prefix_range(p))
            out += [(_rid(r[0]), _blob(r[1])) for r in self.raw(conn, sql, params).fetchall()]
        return sorted(out)

