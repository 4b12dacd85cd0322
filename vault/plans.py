"""The blind-index plans an open vault follows, and the indexers built from them.

:class:`Plans` holds the live plan and, during a re-index, the pending one (both verified:
MAC under the meta key, signature of the lead or the recovery actor), and one
vault.index.Indexer per plan, keyed with the class key versions the plan names. It owns
the ``index_plan*``, ``index_next*`` and ``index_cursor`` rows of ``dv_meta``; the index
rows themselves are written by vault.records and vault.search.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import index as I
from . import keys as K
from .access import Access
from .errors import IntegrityError, KeysChanged, ValidationError
from .session import Session

PLAN_ROWS = ("index_plan", "index_plan_mac", "index_plan_sig", "index_next", "index_next_mac", "index_next_sig")


def verified_plan(meta: Mapping[str, bytes], name: str, ring: K.Keyring, vault_id: bytes) -> I.Plan | None:
    """The plan stored under ``name`` (``index_plan`` or ``index_next``), its MAC and signature
    checked; None if there is none."""
    if name not in meta or not meta[name]:
        return None
    try:
        text = meta[name].decode("utf-8")
    except UnicodeDecodeError:
        raise IntegrityError("index plan is malformed") from None
    K.verify_plan(ring, vault_id, text, meta.get(name + "_mac", b""))
    K.verify_text("plan", ring, vault_id, text, meta.get(name + "_sig", b""))
    try:
        return I.Plan.from_text(text)
    except (ValueError, KeyError, TypeError):
        raise IntegrityError("index plan is authenticated but unparsable") from None


def check_plan_args(population: Any, k: Any, precise: Any) -> None:
    """An index plan's sizing as a caller gives it (create, reindex), refused before any work.
    A bool is an int to Python, but True as a population is a mistake, not a plan of one."""
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in (population, k)):
        raise ValidationError("population and k must be positive integers")
    if not isinstance(precise, bool):
        raise ValidationError("precise must be true or false")


class Plans:
    """The live and pending index plans and their indexers (rebuilt on every new key ring)."""

    def __init__(self, ses: Session, access: Access, active: I.Plan, pending: I.Plan | None) -> None:
        self.ses = ses
        self.access = access
        self.active = active
        self.pending = pending
        self.indexers: list[tuple[int, I.Indexer]] = []
        self.rebuild()
        access.on_new_ring.append(self.rebuild)

    def rebuild(self) -> None:
        """Indexers for the live plan and, during a re-index, the pending one, each with the
        class key versions its plan was built with (rotation switches them via reindex)."""
        self.indexers = self.indexers_for(self.active, self.pending)

    def indexers_for(self, active: I.Plan, pending: I.Plan | None) -> list[tuple[int, I.Indexer]]:
        out = []
        for plan in (active, pending):
            if plan is None:
                continue
            keys = {c: self.access.class_key(c, v) for c, v in plan.class_versions.items()
                    if c in self.access.current}
            out.append((plan.gen, I.Indexer(self.ses.schema, keys, plan)))
        return out

    def switch(self, active: I.Plan, pending: I.Plan | None) -> None:
        self.active, self.pending = active, pending
        self.rebuild()

    def close(self) -> None:
        self.indexers = []

    def sync(self, conn: Any, *, lock: bool = False) -> bool:
        """Follow a re-index that another process began or finished since we loaded the plan
        (verified as at open); True if ours changed. Why: writing terms of a generation that
        was switched out leaves records no search finds, and looking one up finds nothing.
        ``lock``: on PostgreSQL the plan cannot change until our transaction ends."""
        store = self.ses.store()
        if lock:
            store.lock_plan(conn, exclusive=False)
        stored = store.get_meta_values(conn, PLAN_ROWS)
        try:
            active = I.Plan.from_text(stored["index_plan"].decode("utf-8"))
            pending = I.Plan.from_text(stored["index_next"].decode("utf-8")) if stored.get("index_next") else None
        except (KeyError, ValueError, TypeError, UnicodeDecodeError):
            raise IntegrityError("index plan is malformed") from None
        if active == self.active and pending == self.pending:
            return False
        ring = self.access.ring
        assert ring is not None
        active_ok = verified_plan(stored, "index_plan", ring, self.ses.vid)
        if active_ok is None:
            raise IntegrityError("index plan is missing")
        pending_ok = verified_plan(stored, "index_next", ring, self.ses.vid)
        try:
            indexers = self.indexers_for(active_ok, pending_ok)
        except IntegrityError:  # the plan names key versions we lack: a rotation we have not seen
            if self.access.keys_changed():
                raise KeysChanged() from None
            raise
        self.active, self.pending, self.indexers = active_ok, pending_ok, indexers
        return True

    def live_indexer(self) -> I.Indexer:
        """The live generation's indexer, after following a re-index run elsewhere (a
        search with a switched-out generation would find nothing)."""
        with self.ses.store().tx(write=False) as conn:
            self.sync(conn)
        return self.indexers[0][1]

    def widths(self) -> dict[int, int]:
        """Generation -> bytes of each record id its dv_index rows store (vault.index_rows):
        the live plan's and, during a re-index, the pending plan's."""
        return {gen: ix.id_bytes for gen, ix in self.indexers}

    def terms(self, rid: bytes, values: Mapping[str, Any],
              oversize: str = "raise") -> list[tuple[int, str, int, bytes]]:
        """Every generation's index terms of one record (``oversize``: see Indexer.terms)."""
        return [(gen, name, value, rid) for gen, ix in self.indexers
                for name, value in ix.terms(values, oversize=oversize)]

    def meta(self, name: str, plan: I.Plan) -> dict[str, bytes]:
        """A plan as stored: its canonical text, MAC (meta key) and signature (lead/recovery)."""
        ring = self.access.ring
        assert ring is not None
        text = plan.to_text()
        who, sign = self.access.plan_signer()
        vid = self.ses.vid
        return {name: text.encode(),
                name + "_mac": K.mac_plan(ring.current(K.KIND_META_KEY), vid, text),
                name + "_sig": K.sign_text("plan", vid, text, who, sign)}
