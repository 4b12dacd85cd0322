"""Records: validate, seal, open, add, get, update, shred and iterate.

:class:`Records` owns ``dv_records`` (one row per record: an envelope per class, vault.envelope)
and writes each record's blind-index rows (``dv_index``) as it writes the record, with the
indexers of vault.plans. Each write commits with its audit entry (vault.journal), which
names the record states it drops and puts (docs/format.md 13a).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, cast

from . import _crypto as C
from . import _format as F
from . import _parallel as PAR
from . import envelope as E
from .access import Access
from .audit import state_of, states
from .buckets import Bucket
from .canaries import Canaries
from .compact import class_randomness
from .errors import AccessDenied, IntegrityError, KeysChanged, NotFound, ValidationError
from .journal import Journal
from .plans import Plans
from .pseudonyms import Pseudonyms, record_id_bytes
from .record import Record
from .row_encoding import row_encoder
from .session import Session

Classes = dict[str, list[str] | None]


def field_names(fields: Any) -> list[str] | None:
    """A ``fields`` argument as a list, read once: validation and the work both walk it,
    and a generator would be spent by the first."""
    if fields is None:
        return None
    if isinstance(fields, (str, bytes)):
        raise ValidationError("fields must be a list of field names, not a string")
    try:
        out = list(fields)
    except TypeError:
        raise ValidationError("fields must be a list of field names") from None
    if not all(isinstance(n, str) for n in out):
        raise ValidationError("fields must be a list of field names")
    return out


class Records:
    """Seal and open record rows with the opener's class keys; every write is logged."""

    def __init__(self, ses: Session, access: Access, plans: Plans, pseudonyms: Pseudonyms, journal: Journal,
                 canaries: Canaries) -> None:
        self.ses = ses
        self.access = access
        self.plans = plans
        self.pseudonyms = pseudonyms
        self.journal = journal
        self.canaries = canaries
        schema = ses.schema
        self.field_class = {f.name: f.cls for f in schema.fields.values()}
        # bytes.decode (UTF-8, strict) for text: the read hot path calls it once per cell
        self.decoders = cast(dict[str, Callable[[bytes], Any]],
                             {f.name: (bytes.decode if f.type in ("text", "enum") else f.decode)
                              for f in schema.fields.values()})

    # -- the codec -------------------------------------------------------------------------------
    def encode(self, values: Mapping[str, Any], where: str = "", *,
               partial: bool = False) -> dict[str, dict[str, bytes]]:
        """Validate a whole record (or, ``partial``, an update's changes) before any crypto or
        database work (each value by its field, then the schema's required fields: see
        Schema.check_required); group by class."""
        schema = self.ses.schema
        if not isinstance(values, Mapping):
            raise ValidationError(f"{where}a record must be a mapping of field -> value")
        by_class: dict[str, dict[str, bytes]] = {c: {} for c in schema.classes}
        schema.check_required(values, where, partial=partial)  # a blank required value is "required" first
        fields = schema.fields
        for name, value in values.items():
            f = fields.get(name) if isinstance(name, str) else None
            if f is None:
                raise ValidationError(f"{where}unknown field {name!r}", field=str(name))
            if value is None:
                continue
            try:
                by_class[f.cls][name] = f.encode(value)
            except ValidationError as e:
                raise ValidationError(f"{where}{e}", field=name) from None
        return by_class

    def new_format(self) -> int:
        """The record format of a new row: 3 (docs/format.md 6c) once every index plan of the
        vault is of version 3, which releases before format 3 refuse to open, so that none of
        them meets a row it cannot read; 2 until then (the vault's next re-index or rotation
        moves it on). Plans only ever move to version 3, so a stale view errs towards 2."""
        fmt = self.access.codec.writes()
        if fmt == 3 and any(w != F.INDEX_ID_BYTES for w in self.plans.widths().values()):
            return 2
        return fmt

    def seal(self, rid: bytes, by_class: dict[str, dict[str, bytes]], rnd: bytes | None = None,
             only: Iterable[str] | None = None, ids: list[bytes] | None = None, fmt: int | None = None) -> bytes:
        """Every class gets an envelope, even an empty one, so every row has the schema's shape
        and every class has a DEK to rewrap. This hides nothing about content: the field
        names present and their 32-byte length buckets are visible (docs/threat-model.md).
        ``fmt``: the record format (default: what the codec writes, docs/format.md 6b)."""
        a = self.access
        fmt = self.new_format() if fmt is None else fmt
        current, class_pub = a.current, a.class_pub
        envs: list[tuple[str, bytes, int, Any, list[tuple[str, bytes]]]] = []
        need = 0
        classes = self.ses.schema.classes
        chosen = classes if only is None else [c for c in classes if c in set(only)]
        for cls in chosen:
            items = sorted(by_class[cls].items()) if cls in by_class else []
            ck = current.get(cls)
            if ck is not None:
                envs.append((cls, ck.key.kid, ck.key.version, ck.aead, items))
            else:  # write-only class: the DEK is sealed to the class's public key
                pub = class_pub.get(cls)
                if pub is None:
                    raise AccessDenied(f"role {self.ses.role.name!r} can neither read nor write class {cls!r}")
                envs.append((cls, pub.kid, pub.version, pub.secret, items))
            need += class_randomness(len(items), fmt)
        if rnd is None:  # one CSPRNG call per record: cheaper than one per nonce, same source
            rnd = C.random_bytes(need)
        if ids is not None:  # each class's DEK id, in row order, from where seal_record takes it
            pos = 0
            for env in envs:
                ids.append(rnd[pos + F.KEY_LEN:pos + F.KEY_LEN + F.KID_LEN])
                pos += class_randomness(len(env[4]), fmt)
        return a.codec.seal_record(rid, envs, rnd, a.sealing_writer(), fmt)

    def open_row(self, rid: bytes, data: bytes, classes: Classes,
                 decoders: dict[str, Callable[[bytes], Any]] | None = None) -> dict[str, Any]:
        """Authenticate a record row and return the wanted plaintexts: encoded bytes, or
        values if ``decoders`` is given."""
        a = self.access
        try:
            return a.codec.open_record(data, rid, a.keys, classes, self.field_class, decoders, a.writer_key)
        except E.FieldFailure as e:
            raise IntegrityError("field failed authentication", record_id=rid.hex(), field=e.name) from None
        except E.FieldEncoding as e:
            raise IntegrityError("field holds an invalid encoding", record_id=rid.hex(), field=e.name) from None
        except E.EnvelopeFailure as e:
            if a.keys_changed():  # rewrapped by a rotation this handle has not seen: not tampering
                raise KeysChanged() from None
            raise IntegrityError(f"class {e.cls!r} envelope failed authentication", record_id=rid.hex()) from None
        except (E.Malformed, TypeError):  # TypeError: a row edited to hold text, not bytes
            raise IntegrityError("record row is malformed", record_id=rid.hex()) from None

    def classes_for(self, fields: Sequence[str] | None) -> Classes:
        """Which classes to open, and which fields of each to decrypt (None = all).

        Without ``fields``: every class this opener holds. Asking for a field of a class
        the opener's role does not hold is refused here, before any database work (and
        would fail anyway: the key is not in memory)."""
        schema = self.ses.schema
        if fields is None:
            return {c: None for c in schema.classes if c in self.access.current}
        if isinstance(fields, str):
            raise ValidationError("fields must be a list of field names, not a string")
        want: Classes = {}
        for name in fields:
            f = schema.field(name)
            self.access.need_class(f.cls, f"field {name!r}")
            lst = want.setdefault(f.cls, [])
            assert lst is not None
            if name not in lst:
                lst.append(name)
        return want

    def decode_row(self, rid: bytes, data: bytes, classes: Classes) -> Record:
        return Record(rid.hex(), self.open_row(rid, data, classes, self.decoders))

    def second_kind(self) -> bool:
        """Whether this handle's entries name states of the second kind (vault.record_states):
        from the database version it works at, which check_keys keeps current."""
        return self.ses.db_known >= F.RECORD_STATES_V2_FROM

    def state_token(self, rid: bytes, data: bytes, ids: bytes | None = None, *, second: bool | None = None) -> str:
        """The row's state as the audit log names it: of the kind this handle writes, or
        (``second``) of the one asked for. The first kind from the DEK ids a writer just drew
        (``ids``: no parsing)."""
        try:
            if self.second_kind() if second is None else second:
                assert self.access.states_v2 is not None
                return self.access.states_v2.token(rid, data)
            return state_of(self.access.state_key, self.ses.vid, rid, E.dek_ids(data) if ids is None else ids)
        except E.Malformed:
            raise IntegrityError("record row is malformed", record_id=rid.hex()) from None

    def moved_states(self, rid: bytes, old: bytes, new: bytes) -> dict[str, Any]:
        """An update's ``state``: the token dropped and the one put, and, for the second kind,
        both rows' parts (``was``, ``now``), from which the record check recomputes the two
        tokens and sees which classes changed (only those the writer may update may)."""
        st = self.access.states_v2
        if not self.second_kind() or st is None:
            return self.journal.states([self.state_token(rid, old)], [self.state_token(rid, new)])
        try:
            was, now = st.parts(rid, old), st.parts(rid, new)
        except E.Malformed:
            raise IntegrityError("record row is malformed", record_id=rid.hex()) from None
        out = self.journal.states([st.token_of(rid, was)], [st.token_of(rid, now)])
        out["state"].update(was=st.named(was), now=st.named(now))
        return out

    # -- reads -----------------------------------------------------------------------------------
    def get(self, record_id: str, fields: Sequence[str] | None = None) -> Record:
        """Decrypt one record, or only the named fields of it."""
        store = self.ses.store()
        rid = record_id_bytes(record_id)
        classes = self.classes_for(fields)
        with store.tx(write=False) as conn:
            data = store.get_record(conn, rid)
        if data is None:
            raise NotFound(f"no record {record_id}")
        return self.decode_row(rid, data, classes)

    def iterate(self, fields: Sequence[str] | None = None) -> Iterator[Record]:
        """Stream every record (or only some fields of each), decrypting as it goes."""
        store = self.ses.store()
        classes = self.classes_for(fields)
        for rid, data in store.iter_records():
            yield self.decode_row(rid, data, classes)

    def count(self) -> int:
        store = self.ses.store()
        with store.tx(write=False) as conn:
            return store.count_records(conn)

    def ids(self) -> list[str]:
        return [rid.hex() for rid in self.ses.store().ids()]

    # -- writes ----------------------------------------------------------------------------------
    def add_many(self, rows: Iterable[Mapping[str, Any]], progress: Callable[[int, int], None] | None = None, *,
                 entry: tuple[str, dict[str, Any]] = ("add", {}), canaries: Sequence[int] = (),
                 then: Callable[[list[str]], None] | None = None,
                 before_entry: Callable[[], None] | None = None) -> list[str]:
        """Validate, seal and store every row in one transaction: all or nothing.

        Rows are validated, sealed and indexed in chunks, on every core for a big batch
        (vault._parallel: forked workers inherit the rows and keys; only ciphertext and
        index terms come back), while this process writes the finished chunks. A bad row
        rolls the whole transaction back; the error names the first bad row. ``entry``
        (action, detail) is appended in the same transaction, with the new rows' states, and
        a handle that holds the canary list's key re-seals it there too, with the rows
        ``canaries`` (their positions) added (vault.canaries.reseal); ``before_entry()`` runs in
        it before the entry (vault.Vault.import_rows: updates of stored records, whose row
        locks must come before the log's), ``then(ids)`` last (vault.move: the end of the move)."""
        store = self.ses.store()
        self.access.need_writable("adding records")
        rows = list(rows)
        seal = self._sealer(rows)
        out: list[str] = []
        put: list[str] = []
        buckets: dict[Bucket, list[bytes]] = {}
        if len(rows) >= PAR.MIN_ITEMS:  # a batch that may fork (a small one skips this transaction)
            with store.tx(write=False) as conn:
                self.plans.sync(conn)  # before the workers fork: they compute the index terms
        with PAR.pool(seal, len(rows)) as pool, store.tx() as conn:
            if self.canaries.holds_key():  # it signs the key statement again (the canary list): first, as every signer
                store.lock_keys(conn)
            self.access.check_keys(conn)  # sealed with our class keys: they must still be current
            # a re-index began or ended just now: forked workers hold the old plan; in this
            # process nothing is sealed yet (imap is lazy), so the rows take the new one
            if self.plans.sync(conn, lock=True) and isinstance(pool, PAR.Forked):
                raise KeysChanged("the blind-index plan changed while adding (a re-index elsewhere); add again")
            for batch, groups, made in pool.imap(PAR.ranges(len(rows), PAR.CHUNK)):
                store.insert_records(conn, batch)
                for key, ids in groups.items():
                    buckets.setdefault(key, []).append(ids)
                out += [rid.hex() for rid, _ in batch]
                put += made
                if progress is not None:
                    progress(len(out), len(rows))
            store.insert_index_groups(conn, buckets, self.plans.widths())  # all at once: each bucket is written once
            if before_entry is not None:  # writes that lock other rows: before the log's lock, as every writer
                before_entry()
            # in the same transaction: no row without its logged state, no state without its row
            self.journal.record(entry[0], "", {**entry[1], "count": len(out), **self.journal.states(put=put)})
            self.canaries.reseal(conn, [out[i] for i in canaries])  # the lead's adds: after the log's lock
            if then is not None:
                then(out)
        return out

    def _sealer(self, rows: list[Mapping[str, Any]]
                ) -> Callable[[tuple[int, int]], tuple[list[tuple[bytes, bytes]], dict[Bucket, bytes], list[str]]]:
        """What a worker runs on its chunk ``bounds`` of ``rows``: sealed rows, their index
        terms grouped by bucket, and their states. The per-row encoder and sealer are built
        at a process's first chunk (in a forked worker: from the keys it inherited)."""
        built: list[Callable[[Mapping[str, Any], str], tuple[bytes, bytes, str]]] = []

        def seal(bounds: tuple[int, int]) -> tuple[list[tuple[bytes, bytes]], dict[Bucket, bytes], list[str]]:
            if not built:  # a single add keeps the general path (its tests patch Field.encode)
                built.append(self.row_sealer(batch=len(rows) > 1))
            one, gens = built[0], self.plans.indexers
            batch, made = [], []
            buckets: dict[Bucket, list[bytes]] = {}  # group_terms of Plans.terms, built as they come
            for i in range(*bounds):
                values = rows[i]
                rid, data, state = one(values, f"row {i + 1}: ")
                batch.append((rid, data))
                made.append(state)
                try:
                    for gen, ix in gens:
                        for name, value in ix.terms(values):
                            got = buckets.get((gen, name, value))
                            if got is None:
                                buckets[(gen, name, value)] = [rid]
                            else:
                                got.append(rid)
                except ValidationError as e:  # a value too long to index (vault.index.capped_normalize)
                    raise ValidationError(f"row {i + 1}: {e}", field=e.field) from None
            return batch, {key: b"".join(got) for key, got in buckets.items()}, made
        return seal

    def row_sealer(self, batch: bool = True) -> Callable[[Mapping[str, Any], str], tuple[bytes, bytes, str]]:
        """``one(values, where)``: a new record validated and sealed, as (record id, row,
        its state token), for many records under this handle's current keys.

        Why a batch path: encode and seal look up per record what is the same for every
        record of a batch (each field's class and checks, the keys, each class's DEK-info
        and AAD tails: Codec.batch_sealer), and it hands over what the row's state hashes
        instead of having the row parsed again. The result is what encode + seal give for
        the same randomness (tests/test_bulk_seal.py); a handle that seals a class to its
        public key (a write-only role) or writes format 1 or 2 takes encode + seal
        themselves, as does ``batch=False``."""
        classes = self.ses.schema.classes
        current = self.access.current
        first = states(self.access.state_key, self.ses.vid)
        second = self.access.states_v2 if self.second_kind() else None
        fast = None
        if batch and self.new_format() == 3 and all(c in current for c in classes):
            fast = self.access.codec.batch_sealer([(c, current[c].key.kid, current[c].key.version, current[c].aead)
                                                   for c in classes])
        if fast is None:
            def slow(values: Mapping[str, Any], where: str) -> tuple[bytes, bytes, str]:
                by_class = self.encode(values, where)
                rid = C.random_bytes(F.ID_LEN)
                ids: list[bytes] = []
                data = self.seal(rid, by_class, ids=ids)
                return rid, data, first(rid, b"".join(ids)) if second is None else self.state_token(rid, data)
            return slow
        encode = self.row_encoder()
        need = class_randomness(0, 2) * len(classes)
        id_slices = [slice(k + F.KEY_LEN, k + F.KEY_LEN + F.KID_LEN) for k in range(0, need, need // len(classes))]

        def one(values: Mapping[str, Any], where: str) -> tuple[bytes, bytes, str]:
            by_class = encode(values, where)
            rid = C.random_bytes(F.ID_LEN)
            rnd = C.random_bytes(need)  # one CSPRNG call per record, as seal draws it
            if second is None:
                return rid, fast(rid, by_class, rnd, None), first(rid, b"".join([rnd[s] for s in id_slices]))
            bodies: list[bytes] = []
            data = fast(rid, by_class, rnd, bodies)
            return rid, data, second.token_of_bodies(rid, bodies)
        return one

    def row_encoder(self) -> Callable[[Mapping[str, Any], str], dict[str, dict[str, bytes]]]:
        """:meth:`encode` of a whole new record, each field's checks resolved once
        (vault.row_encoding): same output and the same errors (tests/test_bulk_seal.py)."""
        return row_encoder(self.ses.schema, self.encode)

    def update(self, record_id: str, values: Mapping[str, Any]) -> None:
        """Change fields (None removes one). Each touched class gets a fresh DEK and fresh
        ciphertexts for all its fields, so an older cell replayed into the row fails."""
        store = self.ses.store()
        schema = self.ses.schema
        rid = record_id_bytes(record_id)
        changes = self.encode(values, partial=True)  # the facade has checked the classes
        fields = schema.fields
        removed = {n for n, v in values.items() if v is None}
        touched = {c for c in schema.classes if changes[c]} | {fields[n].cls for n in removed}
        detail: dict[str, Any] = {"fields": sorted(map(str, values))}
        with store.tx() as conn:  # the row, its index terms and its entry (with the states) commit together
            self.access.check_keys(conn)
            self.plans.sync(conn, lock=True)
            data = store.get_record(conn, rid, lock=True)
            if data is None:
                raise NotFound(f"no record {record_id}")
            if not touched:
                self.journal.record("update", self.journal.target(record_id), detail)
                return
            plain = self.open_row(rid, data, {c: None for c in touched})
            by_class: dict[str, dict[str, bytes]] = {c: {} for c in touched}
            for name, pt in plain.items():
                by_class[fields[name].cls][name] = pt
            for cls in touched:
                for n in removed:
                    by_class[cls].pop(n, None)
                by_class[cls].update(changes[cls])
            row = self._merged(rid, data, by_class, touched, record_id)
            store.put_record(conn, rid, row)
            # Blind-index terms of the touched classes: old ones out (computed from the values
            # we just decrypted), new ones in.
            if any(f.search == "exact" and f.cls in touched for f in fields.values()):
                def searchable(src: Mapping[str, bytes]) -> dict[str, Any]:
                    return {n: fields[n].decode(pt) for n, pt in src.items() if fields[n].search == "exact"}
                # (the record's prefix stays in a bucket where another record shares it)
                widths = self.plans.widths()
                store.delete_index_terms(conn, self.plans.terms(rid, searchable(plain), "index"), widths)
                new_values = searchable({n: pt for cls in touched for n, pt in by_class[cls].items()})
                store.insert_index(conn, self.plans.terms(rid, new_values), widths)
            moved = self.moved_states(rid, data, row)
            self.journal.record("update", self.journal.target(record_id), {**detail, **moved})

    def _merged(self, rid: bytes, data: bytes, by_class: dict[str, dict[str, bytes]], touched: set[str],
                record_id: str) -> bytes:
        """The row with the ``touched`` classes sealed afresh and the others as they were
        (framing already verified by open_row)."""
        codec = self.access.codec
        fmt = codec.writes(data)  # a row keeps its format: its untouched envelopes stay as they are
        envs = codec.unpack(data)
        fresh = codec.unpack_some(self.seal(rid, by_class, only=touched, fmt=fmt), touched)
        merged = {}
        for cls in self.ses.schema.classes:
            env = fresh[cls] if cls in touched else envs.get(cls)
            if env is None:
                raise IntegrityError(f"class {cls!r} envelope is missing", record_id=record_id)
            merged[cls] = env
        return codec.pack(fmt, merged)

    def delete(self, record_id: str) -> None:
        """Crypto-shred: the record's row, its blind-index entries, its issued pseudonyms and
        its break-glass requests and grants (a grant is a value sealed to an identity key,
        which no rotation reaches) are deleted; on SQLite secure_delete zeroes the freed
        pages and the WAL is checkpointed and truncated. Copies in older backups stay
        readable until the class keys rotate (docs/threat-model.md)."""
        from . import ledger
        from .breakglass_rows import forget
        store = self.ses.store()
        rid = record_id_bytes(record_id)
        with store.tx() as conn:  # the deletion and its entry (with the dropped state) commit together
            # a write like any other: a move's copy keeps it out (vault.move); refused to a
            # handle whose slot is gone (a revoked user's left open) or opened before an upgrade
            self.access.check_enrolled(conn)
            # every generation's width: a re-index begun elsewhere has rows we must clear too
            self.plans.sync(conn, lock=True)
            # the row's lock before the log's (as a rotation batch takes them): else a deadlock
            data = store.get_record(conn, rid, lock=True)
            if data is None:
                raise NotFound(f"no record {record_id}")
            asked = forget(conn, record_id=rid)  # before the log's lock, as a reveal takes them
            try:
                dropped = self.journal.states([self.state_token(rid, data)])
            except IntegrityError:  # a row that does not parse (planted or damaged) has no state to
                dropped = {"unreadable": True}  # drop; shredding it must still be possible
            self.journal.record("shred", self.journal.target(record_id),
                                {**({"requests": asked} if asked else {}), **dropped})
            self.canaries.alarm_if_canary([record_id], "shred")  # here: after the commit no pseudonym names it
            if not store.delete_record(conn, rid):
                raise NotFound(f"no record {record_id}")
            assert self.journal.auditor is not None and self.access.signer is not None
            # in the ledger, so that no restore brings it back (vault.ledger)
            ledger.record(conn, self.ses.vid, rid, self.journal.auditor.actor, self.access.signer,
                          self.access.known_actors)
            # after the row is gone: its prefix leaves each bucket unless a record still
            # present shares it
            store.delete_index(conn, rid, self.plans.widths())
            self.pseudonyms.forget(conn, rid)
        store.checkpoint()

    # -- listings (logged) -------------------------------------------------------------------------
    def iterate_logged(self, fields: Sequence[str] | None) -> Iterator[Record]:
        """:meth:`iterate`, its ``read_all`` entry written as the stream starts (the fields
        are checked then too: a caller may pass a generator)."""
        fields = field_names(fields)
        classes = self.journal.guard("read_all", lambda: self.classes_for(fields))
        shown = sorted(fields) if fields is not None else sorted(
            n for n, f in self.ses.schema.fields.items() if f.cls in classes)
        self.journal.record("read_all", "", {"fields": shown, "count": self.count()})
        canaries = self.canaries.live()
        for rec in self.iterate(fields):
            if rec.id in canaries:
                self.canaries.own_touch(rec.id, "read_all")
            yield rec

    def rows_logged(self, fields: list[str] | None, purpose: str | None, action: str,
                    progress: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:
        """Rows of ``fields`` for every record, each with its ``purpose`` pseudonym if asked,
        sorted by it; logged as ``action`` (``export`` or ``read_all``) with the count."""
        if isinstance(fields, str) or not fields:
            raise ValidationError(f"{action} needs a list of fields")
        wanted = fields
        j, names = self.journal, self.pseudonyms
        j.guard(action, lambda: self.classes_for(wanted))
        if purpose is not None:
            j.guard(action, lambda: names.purpose_keys(purpose))
        total = self.count()
        j.record(action, "", {"fields": sorted(fields), "purpose": purpose, "count": total})
        canaries = self.canaries.live()
        out = []
        for n, rec in enumerate(self.iterate(fields), 1):
            if progress is not None and (n % 500 == 0 or n == total):
                progress(n, total)
            row: dict[str, Any] = {}
            if purpose is not None:
                row["pseudonym"] = names.issue(rec.id, purpose, known_live=True)
            row.update({f: rec.get(f) for f in fields})
            if rec.id in canaries:
                self.canaries.own_touch(rec.id, action)
            out.append(row)
        return sorted(out, key=lambda r: r.get("pseudonym") or "")
