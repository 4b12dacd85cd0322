"""Class-key rotation: new key versions, every DEK rewrapped (or every field re-encrypted),
blind indexes rebuilt, old versions destroyed once nothing references them.

Crash safety is a state machine in ``dv_meta`` whose every step is one transaction:

1. *start*: new class key versions join the keyring (old ones stay) and the rotation
   state is recorded. From here on new writes use the new versions.
2. *rewrap*: records in id order, one batch per transaction with a cursor. A record is
   rewrapped only if one of its envelopes still names an old key id, so repeating a
   batch is harmless.
3. *sweep*: a scan of every row's DEK headers (no decryption) rewraps anything still
   under an old version, e.g. because the cursor was tampered with or a concurrent
   writer raced us. Only after a clean sweep can keys be destroyed.
4. *reindex*: blind indexes are derived from class keys, so they are rebuilt
   (vault.search, itself resumable).
5. *finish*: old versions leave the keyring, the state is cleared, atomically.

A SIGKILL at any point leaves a vault that opens and reads every record (both key
versions are in the keyring until step 5 commits); running rotate() again finishes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from . import _crypto as C
from . import _format as F
from . import _parallel as PAR
from . import envelope as E
from . import keys as K
from .access import Access
from .adopt import adopt_sealed
from .errors import IntegrityError, KeysChanged, ValidationError
from .journal import Journal
from .plans import Plans
from .records import Records
from .search import Search

__all__ = ["Parts", "rotate", "adopt_sealed"]


class Parts(NamedTuple):
    """What a rotation needs of an open vault: the keys it replaces and re-seals, the
    records it rewraps, the index plans and re-index it drives, and the log."""

    access: Access
    records: Records
    plans: Plans
    search: Search
    journal: Journal


def _pending_state(v: Parts, raw: bytes) -> dict[str, Any]:
    """The stored state of an unfinished rotation (format.md §13). It is not authenticated,
    so it must agree with the keyring, which step 1 wrote in the same transaction: it names
    exactly the classes that hold an older key version not yet destroyed, each at its
    current version. Else a database writer could plant a "pending" rotation naming the
    current versions, and the rotation a revocation asks for would finish it and make no
    new key; or leave a class out of a pending one, which would then never be rewrapped
    and, were _finish not to spare the classes not rotated, lose its old key with its data."""
    assert v.access.ring is not None
    old = {k.name for k in v.access.ring.keys
           if k.kind == K.KIND_CLASS_KEY and k.version < v.access.ring.current(K.KIND_CLASS_KEY, k.name).version}
    try:
        state = json.loads(raw)
        classes, reencrypt = state["classes"], state["reencrypt"]
        ok = (isinstance(classes, dict) and set(classes) == old and bool(old) and isinstance(reencrypt, bool)
              and all(c in v.access.ses.schema.classes and type(n) is int
                      and v.access.ring.current(K.KIND_CLASS_KEY, c).version == n for c, n in classes.items()))
    except (ValueError, TypeError, KeyError, RecursionError):
        ok = False
    if not ok and v.access.keys_changed():  # another process's rotation began after we loaded our keys
        raise KeysChanged()
    if not ok:
        raise IntegrityError("the stored rotation state does not match the keys (edited in the database?)")
    return dict(state)


def rotate(v: Parts, classes: Iterable[str] | None = None, *, reencrypt: bool = False,
           batch: int = 500, progress: Callable[[int, int], None] | None = None) -> dict[str, int]:
    store = v.access.ses.store()
    with store.tx(write=False) as conn:
        state_raw = store.get_meta(conn).get("rotation", b"")
    if state_raw:
        state = _pending_state(v, state_raw)
        asked = list(v.access.ses.schema.classes if classes is None else classes)
        if not set(asked) <= set(state["classes"]) or (reencrypt and not state["reencrypt"]):
            # finish the pending one first, then the one asked for (a revocation's rotation
            # must make new keys for the classes it names, whatever was pending)
            done = rotate(v, list(state["classes"]), reencrypt=state["reencrypt"], batch=batch, progress=progress)
            more = rotate(v, asked, reencrypt=reencrypt, batch=batch, progress=progress)
            return {k: done[k] + more[k] for k in done}
    else:
        chosen = list(v.access.ses.schema.classes) if classes is None else list(classes)
        for c in chosen:
            if c not in v.access.ses.schema.classes:
                raise ValidationError(f"unknown class {c!r}")
        state = _start(v, chosen, reencrypt)
    rotating = list(state["classes"])
    with store.tx(write=False) as conn:
        v.plans.sync(conn)  # a re-index another process began or ended
    v.access.refresh_writers()  # forked workers check sealed envelopes' writers without the database
    stats = {"rewrapped": 0, "reencrypted": 0, "swept": 0, "unreadable": 0}
    left: set[bytes] = set()  # rows that do not authenticate, left as they are (_moved)
    # -- 2. rewrap in batches, building the next index generation in the same pass --------------
    want = {c: ck.key.version for c, ck in v.access.current.items()}
    if v.plans.pending is not None and v.plans.pending.class_versions != want:
        v.search.restart_reindex()  # an interrupted re-index with the old versions: plan it again
    elif v.plans.pending is None and v.plans.active.class_versions != want:
        v.search.begin_reindex()
    fused = v.plans.pending is not None and v.plans.pending.class_versions == want
    _rewrap(v, rotating, bool(state["reencrypt"]), fused, batch, stats, progress, left)
    # -- 3. sweep --------------------------------------------------------------------------------
    current = {v.access.current[c].key.kid for c in rotating}
    stale = [rid for rid, data in store.iter_records() if _stale(v, data, rotating, current, state["reencrypt"])]
    for i in range(0, len(stale), batch):
        with store.tx() as conn:
            v.access.check_keys(conn)
            recs = store.get_records(conn, stale[i:i + batch], lock=True)
            updates = [(new, rid) for rid, data in recs
                       if (new := _moved(v, rid, data, rotating, state["reencrypt"], left)) is not None]
            store.put_records(conn, updates)
            store.insert_index(conn, _adopted_terms(v, recs, updates), v.plans.widths())
            if state["reencrypt"]:
                _log_states(v, recs, updates)
            stats["swept"] += len(updates)
    # -- 4. finish the index generation (only the records the fused pass did not cover) -----------
    if v.plans.pending is not None or v.plans.active.class_versions != want:
        v.search.reindex_logged(batch=batch)
    # -- 5. destroy old versions ----------------------------------------------------------------
    stats["unreadable"] = len(left)
    _finish(v, rotating, len(left))
    return stats


def _rewrap(v: Parts, rotating: list[str], reencrypt: bool, fused: bool, batch: int, stats: dict[str, int],
            progress: Callable[[int, int], None] | None, left: set[bytes]) -> None:
    """Step 2: rewrap (or re-encrypt) every record in id order, one batch per transaction
    with a cursor; ``fused``: the pending index generation's rows are written in the same
    pass while the index job is in step with it."""
    store = v.access.ses.store()
    total, done = (v.records.count() if progress else 0), 0

    def part(job: tuple[list[tuple[bytes, bytes]], bool]
             ) -> tuple[list[tuple[bytes, bytes]], list[Any], set[bytes]]:
        """A share of a batch: (rewritten rows, dv_index rows of its records, ready to write,
        the ids of rows left as they were: :func:`_moved`)."""
        recs, with_terms = job
        updates: list[tuple[bytes, bytes]] = []
        rows: list[tuple[bytes, bytes]] = []
        left_here: set[bytes] = set()
        for rid, data in recs:
            new = _moved(v, rid, data, rotating, reencrypt, left_here)
            if new is not None:
                updates.append((new, rid))
            rows.append((rid, new if new is not None else data))
        return updates, (v.search.index_rows_of(rows) if with_terms else []), left_here

    # The rewrap and index work of a batch is spread over forked workers (vault._parallel);
    # each batch still reads, rewrites and moves its cursor in one transaction.
    with PAR.pool(part, v.records.count()) as pool:
        while True:
            with store.tx(write=False) as conn:
                meta = store.get_meta(conn)
            cursor = meta.get("rotation_cursor", b"")
            ids = store.ids_after(cursor, batch)
            if not ids:
                break
            with store.tx() as conn:
                v.access.check_keys(conn)  # a stale keyring would "rewrap" onto the old versions
                recs = store.get_records(conn, ids, lock=True)
                with_terms = fused and meta.get("index_cursor", b"") == cursor  # the index job is in step
                updates: list[tuple[bytes, bytes]] = []
                packed: list[Any] = []
                for upd, rows, left_here in pool.imap([(p, with_terms) for p in PAR.split(recs, pool.size)]):
                    updates += upd
                    packed += rows
                    left |= left_here
                stats["reencrypted" if reencrypt else "rewrapped"] += len(updates)
                store.put_records(conn, updates)
                if reencrypt:
                    _log_states(v, recs, updates)
                progress_meta = {"rotation_cursor": ids[-1]}
                if with_terms:
                    v.search.index_batch(conn, recs, packed)
                    progress_meta["index_cursor"] = ids[-1]
                store.put_meta(conn, progress_meta)
            done += len(ids)
            if progress is not None:
                progress(min(done, total), total)


def _log_states(v: Parts, recs: list[tuple[bytes, bytes]], updates: list[tuple[bytes, bytes]]) -> None:
    """A re-encryption draws new DEKs, so the rows' logged states change: one ``reencrypt``
    entry per batch, in the batch's transaction (a rewrap keeps the DEKs and the states)."""
    if not updates:
        return
    old = dict(recs)
    token = v.records.state_token
    moved = v.journal.states([token(rid, old[rid]) for _, rid in updates], [token(rid, new) for new, rid in updates])
    v.journal.record("reencrypt", "", {"count": len(updates), **moved})


def _start(v: Parts, classes: list[str], reencrypt: bool) -> dict[str, Any]:
    assert v.access.ring is not None
    ring = K.Keyring(list(v.access.ring.keys))
    versions = {}
    for c in classes:
        cur = ring.current(K.KIND_CLASS_KEY, c)
        new = K.Key(K.KIND_CLASS_KEY, c, cur.version + 1, C.random_bytes(F.KID_LEN), C.random_bytes(F.KEY_LEN))
        ring.keys.append(new)
        versions[c] = new.version
    state = {"classes": versions, "reencrypt": bool(reencrypt)}
    _save_ring(v, ring, {"rotation": json.dumps(state, sort_keys=True).encode(), "rotation_cursor": b""})
    return state


def _save_ring(v: Parts, ring: K.Keyring, meta: dict[str, bytes]) -> None:
    """Re-seal every slot's keyring (user slots get their role's subset) with a meta update,
    in one transaction."""
    store = v.access.ses.store()
    with store.tx() as conn:
        store.lock_keys(conn)  # before any slot row (Store.lock_keys)
        v.access.reseal_slots(conn, ring)
        store.put_meta(conn, meta)
    v.access.load_ring(ring)


def _stale(v: Parts, data: bytes, classes: list[str], current: set[bytes], reencrypt: bool) -> bool:
    try:
        if reencrypt and _upgrades(v, data):
            return True
        envs = v.access.codec.unpack(data)
        return any((h := E.parse_dek_header(envs[c][0])).sealed or h.class_kid not in current
                   for c in classes if c in envs)
    except (E.Malformed, KeyError):
        return True  # let _refresh raise the precise IntegrityError


def _adopted_terms(v: Parts, recs: list[tuple[bytes, bytes]],
                   updates: list[tuple[bytes, bytes]]) -> list[tuple[int, str, int, bytes]]:
    """Index terms of the classes the sweep just adopted from a write-only writer's sealed
    wrap. That writer could not compute them, and the fused pass did not see the record (it
    was added behind the cursor): without them a search misses it until the next re-index."""
    before = dict(recs)
    fields = v.access.ses.schema.fields
    terms: list[tuple[int, str, int, bytes]] = []
    for new, rid in updates:
        sealed = {c for c, (dek, _) in v.access.codec.unpack(before[rid]).items() if E.parse_dek_header(dek).sealed}
        names = [n for n, f in fields.items() if f.search == "exact" and f.cls in sealed]
        if names:
            values = dict(v.records.decode_row(rid, new, v.records.classes_for(names)))
            terms += [t for t in v.plans.terms(rid, values, "skip") if fields[t[1].split("#")[0]].cls in sealed]
    return terms


def _refreshed(v: Parts, rid: bytes, data: bytes, classes: list[str], reencrypt: bool) -> bytes | None:
    """The record row with its envelopes of ``classes`` moved to the current key versions,
    or None if nothing needed moving."""
    codec = v.access.codec
    try:
        envs = codec.unpack(data)
    except E.Malformed:
        raise IntegrityError("record row is malformed", record_id=rid.hex()) from None
    if reencrypt and _upgrades(v, data):  # a row of format 1 or 2: re-encrypted whole, in format 3 (§6c)
        plain = v.records.open_row(rid, data, {c: None for c in v.access.ses.schema.classes})
        whole: dict[str, dict[str, bytes]] = {}
        for name, pt in plain.items():
            whole.setdefault(v.access.ses.schema.fields[name].cls, {})[name] = pt
        return v.records.seal(rid, whole)
    fmt = codec.writes(data)
    todo = []
    for c in classes:
        if c in envs:
            try:
                h = E.parse_dek_header(envs[c][0])
            except E.Malformed:
                raise IntegrityError(f"class {c!r} envelope is malformed", record_id=rid.hex()) from None
            if _to_move(v, h, c):
                todo.append(c)
    if not todo:
        return None
    if reencrypt:
        plain = v.records.open_row(rid, data, {c: None for c in todo})
        by_class: dict[str, dict[str, bytes]] = {c: {} for c in todo}
        for name, pt in plain.items():
            by_class[v.access.ses.schema.fields[name].cls][name] = pt
        fresh = codec.unpack_some(v.records.seal(rid, by_class, only=todo, fmt=fmt), set(todo))
        for c in todo:
            envs[c] = fresh[c]
    else:
        for c in todo:
            envs[c] = (_rewrapped(v, rid, data, envs[c], c, fmt), envs[c][1])
    return codec.pack(fmt, envs)


def _rewrapped(v: Parts, rid: bytes, data: bytes, env: tuple[bytes, bytes], c: str, fmt: int) -> bytes:
    """One envelope's DEK wrapped under the current key of class ``c``. Unwrapping
    authenticates the DEK together with the envelope's set of fields, so a tampered
    envelope fails here (IntegrityError) instead of being laundered into a fresh wrap."""
    codec = v.access.codec
    dek_blob, cells_blob = env
    try:
        hdr = E.parse_dek_header(dek_blob)
        old = v.access.by_kid.get(hdr.class_kid)
        if old is None or old.key.name != c:
            raise E.Malformed()
        names = codec.cell_names(data, cells_blob)
        new = v.access.current[c]
        if hdr.derived:  # formats 2 and 3: authenticate the derived DEK, then wrap it (kind D)
            dek = codec.derived_dek(v.access.keys[hdr.class_kid], dek_blob, rid, c, names, fmt)
            codec.authenticate_derived(dek, dek_blob, rid, cells_blob, fmt)
            return E.wrap_dek(new.aead, new.key.kid, new.key.version, hdr.dek_id, dek, v.access.ses.vid, rid, c, names)
        if hdr.sealed:  # written by a role without the class: adopt it into a normal wrap
            dek = E.unseal_dek(E.class_box_secret(old.key.secret), old.key.version, v.access.ses.vid, rid, c,
                               names, dek_blob, v.access.writer_key)
            return E.wrap_dek(new.aead, new.key.kid, new.key.version, hdr.dek_id, dek, v.access.ses.vid, rid, c, names)
        return codec.rewrap(old.aead, old.key.version, new.aead, new.key.kid, new.key.version, rid, c, names, dek_blob)
    except (C.AuthFailure, E.Malformed, E.EnvelopeFailure, KeyError):
        raise IntegrityError(f"class {c!r} data key failed authentication", record_id=rid.hex()) from None


def _to_move(v: Parts, h: E.DekHeader, c: str) -> bool:
    """Whether an envelope of class ``c`` (its DEK header ``h``) moves in this rotation: it
    is under an older key version, or sealed by a writer without the class (adopted into
    an ordinary wrap). :func:`_stale` asks the same of a whole row."""
    return h.sealed or h.class_kid != v.access.current[c].key.kid


def _moved(v: Parts, rid: bytes, data: bytes, classes: list[str], reencrypt: bool, left: set[bytes]) -> bytes | None:
    """:func:`_refreshed`, for a row that may not authenticate: every envelope that does is
    moved to the current key version (rewrapped, when its row cannot be re-encrypted); one
    that does not, or a row that does not parse, is left as it is (as unreadable as it was,
    never laundered into a fresh wrap) and its record id added to ``left``.

    Why not stop the rotation there: a database writer (the staff login may insert rows)
    could then keep any rotation from finishing, a revocation's included, and the old key
    versions, which the revoked user holds, from ever being destroyed. The count of rows
    left goes to the caller (rotate's result, its audit entry); dvault verify names them."""
    try:
        return _refreshed(v, rid, data, classes, reencrypt)
    except IntegrityError:
        left.add(rid)
    codec = v.access.codec
    try:
        envs = codec.unpack(data)
        fmt = codec.writes(data)
    except E.Malformed:
        return None
    moved = False
    for c in classes:
        env = envs.get(c)
        try:
            if env is None or not _to_move(v, E.parse_dek_header(env[0]), c):
                continue
            envs[c] = (_rewrapped(v, rid, data, env, c, fmt), env[1])
            moved = True
        except (IntegrityError, E.Malformed):
            continue
    return codec.pack(fmt, envs) if moved else None


def _upgrades(v: Parts, data: bytes) -> bool:
    """Whether a re-encryption rewrites this row in the record format new rows are written in
    (3): a row of an older format, when this opener holds every class (each envelope is sealed
    afresh; a row cannot mix formats)."""
    codec = v.access.codec
    return (codec.writes(data) < v.records.new_format()
            and all(c in v.access.current for c in v.access.ses.schema.classes))


def _finish(v: Parts, rotating: list[str], left: int = 0) -> None:
    """Destroy the old versions of the classes rotated (the sweep left nothing readable
    under them); ``left``: rows that did not authenticate, kept as they were, counted in
    a ``rotate_unreadable`` entry (a count: the log names no record)."""
    assert v.access.ring is not None
    keep = []
    for k in v.access.ring.keys:
        if k.kind == K.KIND_CLASS_KEY and k.name in rotating and k.kid != v.access.current[k.name].key.kid:
            continue  # an old version of a class rotated here: the sweep left nothing under it
        keep.append(k)
    _save_ring(v, K.Keyring(keep), {"rotation": b"", "rotation_cursor": b""})
    if left:
        v.journal.record("rotate_unreadable", "", {"classes": sorted(rotating), "unreadable_rows": left})
