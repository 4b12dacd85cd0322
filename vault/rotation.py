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
   (:meth:`Vault.reindex`, itself resumable).
5. *finish*: old versions leave the keyring, the state is cleared, atomically.

A SIGKILL at any point leaves a vault that opens and reads every record (both key
versions are in the keyring until step 5 commits); running rotate() again finishes.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Callable, Iterable

from . import _crypto as C
from . import _format as F
from . import _parallel as PAR
from . import envelope as E
from . import keys as K
from .errors import IntegrityError, KeysChanged, ValidationError

if TYPE_CHECKING:
    from .vault import Vault


def _pending_state(v: "Vault", raw: bytes) -> dict[str, Any]:
    """The stored state of an unfinished rotation (format.md §13). It is not authenticated,
    so it must agree with the keyring, which step 1 wrote in the same transaction: it names
    exactly the classes that hold an older key version not yet destroyed, each at its
    current version. Else a database writer could plant a "pending" rotation naming the
    current versions, and the rotation a revocation asks for would finish it and make no
    new key; or leave a class out of a pending one, which would then never be rewrapped
    and (before _finish spared the classes not rotated) lose its old key with its data."""
    assert v._ring is not None
    old = {k.name for k in v._ring.keys
           if k.kind == K.KIND_CLASS_KEY and k.version < v._ring.current(K.KIND_CLASS_KEY, k.name).version}
    try:
        state = json.loads(raw)
        classes, reencrypt = state["classes"], state["reencrypt"]
        ok = (isinstance(classes, dict) and set(classes) == old and bool(old) and isinstance(reencrypt, bool)
              and all(c in v.schema.classes and type(n) is int
                      and v._ring.current(K.KIND_CLASS_KEY, c).version == n for c, n in classes.items()))
    except (ValueError, TypeError, KeyError, RecursionError):
        ok = False
    if not ok and v._keys_changed():  # another process's rotation began after we loaded our keys
        raise KeysChanged()
    if not ok:
        raise IntegrityError("the stored rotation state does not match the keys (edited in the database?)")
    return state


def rotate(v: "Vault", classes: Iterable[str] | None = None, *, reencrypt: bool = False,
           batch: int = 500, progress: "Callable[[int, int], None] | None" = None) -> dict[str, int]:
    store = v._s()
    with store.tx(write=False) as conn:
        state_raw = store.get_meta(conn).get("rotation", b"")
    if state_raw:
        state = _pending_state(v, state_raw)
        asked = list(v.schema.classes if classes is None else classes)
        if not set(asked) <= set(state["classes"]) or (reencrypt and not state["reencrypt"]):
            # finish the pending one first, then the one asked for (a revocation's rotation
            # must make new keys for the classes it names, whatever was pending)
            done = rotate(v, list(state["classes"]), reencrypt=state["reencrypt"], batch=batch, progress=progress)
            more = rotate(v, asked, reencrypt=reencrypt, batch=batch, progress=progress)
            return {k: done[k] + more[k] for k in done}
    else:
        chosen = list(v.schema.classes) if classes is None else list(classes)
        for c in chosen:
            if c not in v.schema.classes:
                raise ValidationError(f"unknown class {c!r}")
        state = _start(v, chosen, reencrypt)
    rotating = list(state["classes"])
    with store.tx(write=False) as conn:
        v._sync_plan(conn)  # a re-index another process began or ended
    v._refresh_writers()  # forked workers check sealed envelopes' writers without the database
    stats = {"rewrapped": 0, "reencrypted": 0, "swept": 0}
    total, done = (v.count() if progress else 0), 0
    # -- 2. rewrap in batches, building the next index generation in the same pass --------------
    want = {c: ck.key.version for c, ck in v._current.items()}
    if v._plan_pending is not None and v._plan_pending.class_versions != want:
        v._restart_reindex()  # an interrupted re-index with the old versions: plan it again
    elif v._plan_pending is None and v._plan_active.class_versions != want:
        v._begin_reindex()
    fused = v._plan_pending is not None and v._plan_pending.class_versions == want
    reencrypt = bool(state["reencrypt"])

    def part(job: tuple[list[tuple[bytes, bytes]], bool]) -> tuple[list, list]:
        """A share of a batch: (rewritten rows, dv_index rows of its records, ready to write)."""
        recs, with_terms = job
        updates, rows = [], []
        for rid, data in recs:
            new = _refreshed(v, rid, data, rotating, reencrypt)
            if new is not None:
                updates.append((new, rid))
            rows.append((rid, new if new is not None else data))
        return updates, (v._index_rows_of(rows) if with_terms else [])

    # The rewrap and index work of a batch is spread over forked workers (vault._parallel);
    # each batch still reads, rewrites and moves its cursor in one transaction.
    with PAR.pool(part, v.count()) as pool:
        while True:
            with store.tx(write=False) as conn:
                meta = store.get_meta(conn)
            cursor = meta.get("rotation_cursor", b"")
            ids = store.ids_after(cursor, batch)
            if not ids:
                break
            with store.tx() as conn:
                v._check_keys(conn)  # a stale keyring would "rewrap" onto the old versions
                recs = store.get_records(conn, ids, lock=True)
                with_terms = fused and meta.get("index_cursor", b"") == cursor  # the index job is in step
                updates, packed = [], []
                for upd, rows in pool.imap([(p, with_terms) for p in PAR.split(recs, pool.size)]):
                    updates += upd
                    packed += rows
                stats["reencrypted" if reencrypt else "rewrapped"] += len(updates)
                store.put_records(conn, updates)
                if reencrypt:
                    _log_states(v, recs, updates)
                progress_meta = {"rotation_cursor": ids[-1]}
                if with_terms:
                    v._index_batch(conn, recs, packed)
                    progress_meta["index_cursor"] = ids[-1]
                store.put_meta(conn, progress_meta)
            done += len(ids)
            if progress is not None:
                progress(min(done, total), total)
    # -- 3. sweep --------------------------------------------------------------------------------
    current = {v._current[c].key.kid for c in rotating}
    stale = [rid for rid, data in store.iter_records() if _stale(data, rotating, current)]
    for i in range(0, len(stale), batch):
        with store.tx() as conn:
            v._check_keys(conn)
            recs = store.get_records(conn, stale[i:i + batch], lock=True)
            updates = [(new, rid) for rid, data in recs
                       if (new := _refreshed(v, rid, data, rotating, state["reencrypt"])) is not None]
            store.put_records(conn, updates)
            store.insert_index(conn, _adopted_terms(v, recs, updates))
            if state["reencrypt"]:
                _log_states(v, recs, updates)
            stats["swept"] += len(updates)
    # -- 4. finish the index generation (only the records the fused pass did not cover) -----------
    if v._plan_pending is not None or v._plan_active.class_versions != want:
        v.reindex(batch=batch)
    # -- 5. destroy old versions ----------------------------------------------------------------
    _finish(v, rotating)
    return stats


def _log_states(v: "Vault", recs: list[tuple[bytes, bytes]], updates: list[tuple[bytes, bytes]]) -> None:
    """A re-encryption draws new DEKs, so the rows' logged states change: one ``reencrypt``
    entry per batch, in the batch's transaction (a rewrap keeps the DEKs and the states)."""
    if not updates:
        return
    old = dict(recs)
    v._audit("reencrypt", "", {"count": len(updates), **v._states(
        [v._state_token(rid, old[rid]) for _, rid in updates], [v._state_token(rid, new) for new, rid in updates])})


def _start(v: "Vault", classes: list[str], reencrypt: bool) -> dict:
    assert v._ring is not None
    ring = K.Keyring(list(v._ring.keys))
    versions = {}
    for c in classes:
        cur = ring.current(K.KIND_CLASS_KEY, c)
        new = K.Key(K.KIND_CLASS_KEY, c, cur.version + 1, C.random_bytes(F.KID_LEN), C.random_bytes(F.KEY_LEN))
        ring.keys.append(new)
        versions[c] = new.version
    state = {"classes": versions, "reencrypt": bool(reencrypt)}
    _save_ring(v, ring, {"rotation": json.dumps(state, sort_keys=True).encode(), "rotation_cursor": b""})
    return state


def _save_ring(v: "Vault", ring: K.Keyring, meta: dict[str, bytes]) -> None:
    """Re-seal every slot's keyring (user slots get their role's subset) with a meta update,
    in one transaction."""
    store = v._s()
    with store.tx() as conn:
        store.lock_keys(conn)  # before any slot row (Store.lock_keys)
        v._reseal_slots(conn, ring)
        store.put_meta(conn, meta)
    v._load_ring(ring)


def _stale(data: bytes, classes: list[str], current: set[bytes]) -> bool:
    try:
        envs = E.unpack_record(data)
        return any((h := E.parse_dek_header(envs[c][0])).sealed or h.class_kid not in current
                   for c in classes if c in envs)
    except (E.Malformed, KeyError):
        return True  # let _refresh raise the precise IntegrityError


def _adopted_terms(v: Vault, recs: list[tuple[bytes, bytes]],
                   updates: list[tuple[bytes, bytes]]) -> list[tuple[int, str, int, bytes]]:
    """Index terms of the classes the sweep just adopted from a write-only writer's sealed
    wrap. That writer could not compute them, and the fused pass did not see the record (it
    was added behind the cursor): without them a search misses it until the next re-index."""
    before = dict(recs)
    fields = v.schema.fields
    terms: list[tuple[int, str, int, bytes]] = []
    for new, rid in updates:
        sealed = {c for c, (dek, _) in E.unpack_record(before[rid]).items() if E.parse_dek_header(dek).sealed}
        names = [n for n, f in fields.items() if f.search == "exact" and f.cls in sealed]
        if names:
            values = dict(v._decode_row(rid, new, v._plan(names)))
            terms += [t for t in v._index_rows(rid, values, "skip") if fields[t[1].split("#")[0]].cls in sealed]
    return terms


def _refreshed(v: "Vault", rid: bytes, data: bytes, classes: list[str], reencrypt: bool) -> bytes | None:
    """The record row with its envelopes of ``classes`` moved to the current key versions,
    or None if nothing needed moving."""
    try:
        envs = E.unpack_record(data)
    except E.Malformed:
        raise IntegrityError("record row is malformed", record_id=rid.hex()) from None
    todo = []
    for c in classes:
        if c in envs:
            try:
                h = E.parse_dek_header(envs[c][0])
            except E.Malformed:
                raise IntegrityError(f"class {c!r} envelope is malformed", record_id=rid.hex()) from None
            if h.sealed or h.class_kid != v._current[c].key.kid:
                todo.append(c)
    if not todo:
        return None
    if reencrypt:
        plain = v._open_row(rid, data, {c: None for c in todo})
        by_class: dict[str, dict[str, bytes]] = {c: {} for c in todo}
        for name, pt in plain.items():
            by_class[v.schema.fields[name].cls][name] = pt
        fresh = E.unpack_record(v._seal_record(rid, by_class, only=todo))
        for c in todo:
            envs[c] = fresh[c]
    else:
        # Unwrapping authenticates the DEK together with the envelope's set of fields, so a
        # tampered envelope fails here instead of being laundered into a fresh wrap.
        for c in todo:
            dek_blob, cells_blob = envs[c]
            hdr = E.parse_dek_header(dek_blob)
            old = v._by_kid.get(hdr.class_kid)
            try:
                if old is None or old.key.name != c:
                    raise E.Malformed()
                names = tuple(E.unpack_cells(cells_blob))
                new = v._current[c]
                if hdr.sealed:  # written by a role without the class: adopt it into a normal wrap
                    dek = E.unseal_dek(E.class_box_secret(old.key.secret), old.key.version, v._vid, rid, c,
                                       names, dek_blob, v._writer_key)
                    wrapped = E.wrap_dek(new.aead, new.key.kid, new.key.version, hdr.dek_id, dek, v._vid, rid, c,
                                         names)
                else:
                    wrapped = v._codec.rewrap(old.aead, old.key.version, new.aead, new.key.kid, new.key.version,
                                              rid, c, names, dek_blob)
            except (C.AuthFailure, E.Malformed):
                raise IntegrityError(f"class {c!r} data key failed authentication", record_id=rid.hex()) from None
            envs[c] = (wrapped, cells_blob)
    return E.pack_record([(c, envs[c][0], envs[c][1]) for c in v.schema.classes])


def _finish(v: "Vault", rotating: list[str]) -> None:
    assert v._ring is not None
    keep = []
    for k in v._ring.keys:
        if k.kind == K.KIND_CLASS_KEY and k.name in rotating and k.kid != v._current[k.name].key.kid:
            continue  # an old version of a class rotated here: the sweep left nothing under it
        keep.append(k)
    _save_ring(v, K.Keyring(keep), {"rotation": b"", "rotation_cursor": b""})


def adopt_sealed(store: Any, conn: Any, vault_id: bytes, class_keys: dict[bytes, K.Key],
                 pick: Callable[[E.DekHeader], bool], writers: E.WriterKeys | None = None) -> int:
    """Rewrap the sealed DEKs that ``pick`` selects into ordinary kind-D wraps under the class
    key each was sealed to (same DEK, same cells, no re-encryption); returns how many.

    Two callers. The upgrade to database schema v5 adopts the unsigned kind-E DEKs of older
    releases as they are (as a rotation always did), after which readers refuse kind E. The
    revocation of a writer adopts their kind-W DEKs, signature checked first, so that no
    envelope a reader accepts rests on a signer who no longer counts. Raises IntegrityError
    if one fails, or if its class key is not among ``class_keys``."""
    todo = []
    for rid, data in store.scan_records(conn):
        try:
            envs = E.unpack_record(data)
            hit = [c for c, (dek, _) in envs.items() if (h := E.parse_dek_header(dek)).sealed and pick(h)]
        except E.Malformed:
            raise IntegrityError("record row is malformed", record_id=rid.hex()) from None
        if hit:
            todo.append((rid, envs, hit))
    for rid, envs, hit in todo:
        for c in hit:
            dek_blob, cells = envs[c]
            hdr = E.parse_dek_header(dek_blob)
            key = class_keys.get(hdr.class_kid)
            if key is None or key.name != c:
                raise IntegrityError(f"sealed class {c!r} envelopes must be adopted by someone holding that "
                                     "class: the security lead must open this vault first")
            try:
                names = tuple(E.unpack_cells(cells))
                dek = E.unseal_dek(E.class_box_secret(key.secret), key.version, vault_id, rid, c, names, dek_blob,
                                   writers, legacy=not hdr.writer)
            except (C.AuthFailure, E.Malformed):
                raise IntegrityError(f"class {c!r} data key failed authentication", record_id=rid.hex()) from None
            envs[c] = (E.wrap_dek(C.Aead(key.secret), key.kid, key.version, hdr.dek_id, dek, vault_id, rid, c, names),
                       cells)
        store.put_record(conn, rid, E.pack_record([(c, dek, cells) for c, (dek, cells) in envs.items()]))
    return sum(len(hit) for _, _, hit in todo)
