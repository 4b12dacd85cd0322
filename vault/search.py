"""Search over the blind indexes, and re-indexing.

:class:`Search` turns ``field=value`` criteria into index terms with the live indexer
(vault.plans), looks the candidates up in ``dv_index``, decrypts only the searched fields
to drop the false positives, then the requested fields of the true matches. Re-indexing
builds a new index generation beside the live one, one batch per transaction with a
cursor, then switches the plans (signed) and deletes the old generation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from . import _format as F
from . import _parallel as PAR
from . import index as I
from . import schema as S
from .access import Access
from .args import check_batch, check_progress
from .buckets import pack_terms
from .errors import IntegrityError, KeysChanged, ValidationError, utf8
from .journal import Journal
from .normalize import tokens
from .plans import Plans, check_plan_args
from .record import Record
from .records import Records
from .session import Session

Term = tuple[int, str, int, bytes]
IndexRow = tuple[int, str, int, bytes, bytes]
_NO_NEXT = {"index_next": b"", "index_next_mac": b"", "index_next_sig": b"", "index_cursor": b""}


class Search:
    """find / find_tokens with the live index generation; reindex into the next one."""

    def __init__(self, ses: Session, access: Access, plans: Plans, records: Records, journal: Journal) -> None:
        self.ses = ses
        self.access = access
        self.plans = plans
        self.records = records
        self.journal = journal

    # -- search -----------------------------------------------------------------------------------
    def field(self, name: str) -> S.Field:
        f = self.ses.schema.field(name)
        self.access.need_class(f.cls, f"field {name!r}")
        if f.search != "exact":
            raise ValidationError(f"field {name!r} has no blind index (search = 'none')", field=name)
        return f

    def candidates(self, terms: list[tuple[str, int]]) -> list[tuple[bytes, bytes]]:
        """The rows (id, data) of every record the index names for ``terms`` (with a plan of
        version 3 it stores 8-byte id prefixes: each stands for the records whose id starts
        with it, all of them candidates, as bucket-mates are)."""
        store = self.ses.store()
        active = self.plans.active
        with store.tx(write=False) as conn:
            found = store.lookup_index(conn, active.gen, terms, active.id_bytes)
            if not found:
                return []
            if active.id_bytes == F.ID_LEN:
                return store.get_records(conn, found)
            return store.records_by_prefix(conn, found)

    def matches(self, rows: list[tuple[bytes, bytes]], need: list[str], fields: Sequence[str] | None,
                keep: Callable[[Record], bool]) -> list[Record]:
        """Decrypt only the searched fields of the candidate rows to drop the false
        positives, then the requested fields of the true matches only."""
        if not rows:
            return []
        probe = self.records.classes_for(need)
        full = self.records.classes_for(self.access.readable_fields() if fields is None else list(fields))
        out = []
        for rid, data in rows:
            if keep(self.records.decode_row(rid, data, probe)):
                out.append(self.records.decode_row(rid, data, full))
        return out

    def detail(self, criteria: Mapping[str, Any], fields: list[str] | None, out: list[Record]) -> dict[str, Any]:
        """A search entry: the fields searched on (never the terms), the fields it decrypted
        and returned, and each match's audit pseudonym, so that "who looked at this person"
        finds searches too (audit_entries(target=...), the summary)."""
        returned = sorted(fields) if fields is not None else sorted(self.access.readable_fields())
        return {"fields": sorted(criteria), "returned": returned, "results": len(out),
                "targets": sorted(t for t in (self.journal.target(r.id) for r in out) if t)}

    def find(self, /, fields: Sequence[str] | None = None, **criteria: Any) -> list[Record]:
        """Records whose fields equal all the given values (after normalisation).

        Uses the truncated blind indexes to pick candidates, decrypts them and drops the
        false positives, so the result is exact. ``fields`` limits what is returned.
        Example: ``v.find(legal_name="Amira Haddad", email="amira@example.org")``.
        """
        if not criteria:
            raise ValidationError("find() needs at least one field=value")
        if fields is not None:
            self.records.classes_for(fields)  # validates names
        ix = self.plans.live_indexer()
        terms, wanted = [], {}
        for name, value in criteria.items():
            f = self.field(name)
            if f.type != "text" and isinstance(value, str):
                value = f.parse_text(value)  # "41", a YYYY-MM-DD date, "yes": as the CLI types them
            elif f.type == "text" and not isinstance(value, str):
                raise ValidationError(f"search value for {name!r} must be text", field=name)
            elif f.type == "text":
                utf8(value, f"search value for {name!r} must be valid UTF-8 text", field=name)
            wanted[name] = I.normal_form(f, value)
            if not wanted[name]:  # e.g. "n/a" as a phone: it would match every value that is no number
                raise ValidationError(f"search value for {name!r} is empty once normalised", field=name)
            terms.append(ix.exact_term(f, value, normal=wanted[name]))
        schema_fields = self.ses.schema.fields

        def keep(rec: Record) -> bool:
            return all(n in rec and I.stored_normal_form(schema_fields[n], rec[n]) == v for n, v in wanted.items())
        return self.matches(self.candidates(terms), list(criteria), fields, keep)

    def find_tokens(self, /, fields: Sequence[str] | None = None, **criteria: str) -> list[Record]:
        """Records whose name fields contain every given token: "Haddad" finds "Amira Haddad".

        Only fields declared with ``tokens = true`` can be searched this way.
        """
        if not criteria:
            raise ValidationError("find_tokens() needs at least one field=value")
        if fields is not None:
            self.records.classes_for(fields)
        ix = self.plans.live_indexer()
        terms, wanted = [], {}
        for name, value in criteria.items():
            f = self.field(name)
            if not f.tokens:
                raise ValidationError(f"field {name!r} has no token index (tokens = false)", field=name)
            if not isinstance(value, str):
                raise ValidationError(f"search value for {name!r} must be text", field=name)
            utf8(value, f"search value for {name!r} must be valid UTF-8 text", field=name)
            query = ix.token_terms(f, value)
            if not query:
                raise ValidationError(f"search for {name!r} needs a token of two or more characters", field=name)
            terms.extend(query)
            wanted[name] = set(tokens(I.capped_normalize(name, "name", value)))
        schema_fields = self.ses.schema.fields

        def keep(rec: Record) -> bool:
            return all(n in rec and v <= I.stored_tokens(schema_fields[n], rec[n]) for n, v in wanted.items())
        return self.matches(self.candidates(terms), list(criteria), fields, keep)

    # -- re-indexing ------------------------------------------------------------------------------
    def reindex_logged(self, *, population: int | None = None, k: int | None = None, precise: bool | None = None,
                       batch: int = 500, progress: Callable[[int, int], None] | None = None) -> int:
        """:meth:`reindex` with its checks and its ``reindex`` entry (what Vault.reindex and a
        rotation's last step run)."""
        j = self.journal
        j.guard("reindex", lambda: self.access.need_all_classes("re-indexing"))
        check_batch(batch)
        check_progress(progress)
        j.record("reindex", "", {"population": population, "k": k,
                                 **({} if precise is None else {"precise": precise})})
        return j.guard("reindex", lambda: self.reindex(population=population, k=k, precise=precise, batch=batch,
                                                       progress=progress))

    def reindex(self, *, population: int | None = None, k: int | None = None, precise: bool | None = None,
                batch: int = 500, progress: Callable[[int, int], None] | None = None) -> int:
        """Rebuild every blind index (new key derivation or new truncation) as a resumable
        batch job; returns the number of records indexed by this call.

        A new generation is built beside the live one (searches keep working), one batch
        per transaction with a cursor; after a crash, calling reindex() again resumes.
        When done, the new plan is switched in and the old generation deleted atomically.
        ``precise``: plan each index on its own (True) or all jointly (False); by default the
        live plan's choice, and joint for a plan of an older release. ``progress(done, total)``
        is called after each batch (a front end's progress bar).
        """
        store = self.ses.store()
        self.access.need_all_classes("re-indexing")
        with store.tx(write=False) as conn:
            self.plans.sync(conn)  # resume (or see finished) a re-index another process ran
        if self.plans.pending is None:
            self.begin_reindex(population, k, precise)
        else:
            self._join_pending(population, k, precise)
        pending = self.plans.pending
        assert pending is not None
        done, total = 0, self.records.count()
        with PAR.pool(self.index_rows_of, total) as pool:
            while True:
                with store.tx(write=False) as conn:
                    cursor = store.get_meta(conn).get("index_cursor", b"")
                ids = store.ids_after(cursor, batch)
                if not ids:
                    break
                with store.tx() as conn:
                    self.access.check_keys(conn)  # index keys derive from our class keys
                    if not self._still_pending(conn, pending):
                        break  # finished or replaced elsewhere: the cursor is not our job's
                    # locked (PostgreSQL: FOR UPDATE) to our commit: a shred or update of one
                    # of them waits for the rows we write and then clears them, or committed
                    # first and the row is gone or new; read unlocked, a shred committing
                    # meanwhile left its record's terms in the new generation
                    rows = store.get_records(conn, ids, lock=True)
                    packed: list[IndexRow] = []
                    for part in pool.imap(PAR.split(rows, pool.size)):
                        packed += part
                    done += self.index_batch(conn, rows, packed)
                    store.put_meta(conn, {"index_cursor": ids[-1]})
                if progress is not None:
                    progress(min(done, total), total)
        with store.tx() as conn:
            self.access.check_keys(conn)  # index keys derive from our class keys
            store.lock_plan(conn, exclusive=True)
            if not self._still_pending(conn, pending):
                if self.plans.active == pending:
                    return done  # another process finished this re-index: nothing to switch
                raise KeysChanged("the blind-index plan changed meanwhile (a re-index elsewhere replaced this "
                                  "one); see status, and re-index again if its plan is not the one wanted")
            store.put_meta(conn, {**self.plans.meta("index_plan", pending), **_NO_NEXT})
            store.delete_index_gen(conn, keep=pending.gen)
        self.plans.switch(pending, None)
        return done

    def _still_pending(self, conn: Any, pending: I.Plan) -> bool:
        """Whether ``pending`` is still the vault's pending plan (read under the plan lock,
        shared unless the caller holds it exclusive). Why: another process may have finished
        this re-index, and begun or finished another, since we read the plan; our batches
        would then follow that job's cursor, and our switch put our plan back in over its
        plan (deleting its generation)."""
        self.plans.sync(conn, lock=True)
        return self.plans.pending == pending

    def begin_reindex(self, population: int | None = None, k: int | None = None,
                      precise: bool | None = None) -> None:
        """Record (signed) the next index plan, built with the current class key versions."""
        store = self.ses.store()
        cur = self.plans.active
        population = cur.population if population is None else population
        k = cur.k if k is None else k
        precise = cur.mode == "precise" if precise is None else precise
        check_plan_args(population, k, precise)
        nxt = I.make_plan(cur.gen + 1, self.ses.schema, population, k,
                          {c: ck.key.version for c, ck in self.access.current.items()}, precise)
        with store.tx() as conn:
            self.access.check_keys(conn)  # index keys derive from our class keys
            store.lock_plan(conn, exclusive=True)
            if self.plans.sync(conn) and self.plans.pending is not None:
                self._join_pending(population, k, precise)  # another process began one just now
                return
            store.put_meta(conn, {**self.plans.meta("index_next", nxt), "index_cursor": b""})
            # the new generation starts empty: rows already under its number were written by
            # no plan (a database edit), and would otherwise be switched in with it
            store.delete_index_gen(conn, keep=self.plans.active.gen)
        self.plans.switch(self.plans.active, nxt)

    def restart_reindex(self) -> None:
        """A pending re-index planned with class key versions that a rotation is replacing
        (it was interrupted, then a rotation began): finishing it would switch in a plan
        whose keys the rotation then destroys, and the vault would no longer open. Its rows
        are dropped and it is planned again, same population and k, with the current keys."""
        stale = self.plans.pending
        assert stale is not None
        store = self.ses.store()
        with store.tx() as conn:
            self.access.check_keys(conn)
            store.lock_plan(conn, exclusive=True)
            self.plans.sync(conn)
            if self.plans.pending != stale:
                raise KeysChanged("the blind-index plan changed meanwhile (a re-index elsewhere); rotate again")
            store.delete_index_gen(conn, keep=self.plans.active.gen)
            store.put_meta(conn, dict(_NO_NEXT))
        self.plans.switch(self.plans.active, None)
        self.begin_reindex(stale.population, stale.k, stale.mode == "precise")

    def _join_pending(self, population: int | None, k: int | None, precise: bool | None = None) -> None:
        """A re-index is under way (begun here before a crash, or by another process): it is
        resumed, not replaced, so two never write one generation with different plans. Asked
        for another plan, say so instead of building one that was not asked for."""
        pending = self.plans.pending
        assert pending is not None
        if (population is not None and population != pending.population) or (k is not None and k != pending.k) \
                or (precise is not None and precise != (pending.mode == "precise")):
            raise ValidationError(f"a re-index for population {pending.population}, k {pending.k} ({pending.mode} "
                                  "plan) is under way: "
                                  "let it finish (reindex() with no arguments), then re-plan")

    def index_terms(self, rows: list[tuple[bytes, bytes]]) -> list[Term]:
        """The pending generation's index terms for these (id, row) pairs."""
        gen, ix = self.plans.indexers[-1]
        assert self.plans.pending is not None and gen == self.plans.pending.gen
        searchable = [f.name for f in self.ses.schema.fields.values() if f.search == "exact"]
        classes = self.records.classes_for(searchable)
        terms = []
        for rid, data in rows:
            try:
                rec = self.records.decode_row(rid, data, classes)
            except IntegrityError:  # unreadable, so unsearchable (verify names it); one planted row
                continue  # must not keep a re-index, or the rotation it runs with, from finishing
            # a stored value over the cap (an older release's) is not indexed: no capped query finds it
            terms += [(gen, name, value, rid) for name, value in ix.terms(dict(rec), oversize="skip")]
        return terms

    def index_rows_of(self, rows: list[tuple[bytes, bytes]]) -> list[IndexRow]:
        """The pending generation's dv_index rows for these (id, row) pairs, ready to write:
        a worker's share of a batch (two shares may each hold a row of one bucket)."""
        return pack_terms(self.index_terms(rows), self.plans.widths())

    def index_batch(self, conn: Any, rows: list[tuple[bytes, bytes]], packed: list[IndexRow] | None = None) -> int:
        """Write the pending generation's index rows for these (id, row) pairs (``packed``:
        already built, e.g. by workers, with :meth:`index_rows_of`)."""
        # A record added during the re-index already has new-generation terms; it is then in
        # two chunks of a bucket, which readers (and deletes) handle as one.
        self.ses.store().insert_index_rows(conn, self.index_rows_of(rows) if packed is None else packed)
        return len(rows)
