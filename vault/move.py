"""Moving every record into a new vault under a new lead (docs/threat-model.md 6.6).

Why a new vault rather than a new lead in place: whoever holds the old lead's identity,
or the recovery passphrase, holds the meta and purpose keys, which never rotate (section
8), and the old lead could go on signing the schema, index plan and user table. A fresh
vault draws every key anew: class, meta and purpose keys, record ids, DEKs and the
recovery passphrase's slot, and the rows go in in a random order. Nothing in it is
linkable to the old rows without reading both with their own keys, except through a row's
shape (its fields and their length buckets, which carry over); pseudonyms change.

What is carried: every record's values (with every class opened, so the mover must hold
every class key) and which records are canaries. What is not: users (the old user table
is signed by the key that may be in other hands: the new lead re-enrols each user after
checking their fingerprint), break-glass requests and grants, and the audit log (it stays
with the old vault, which is evidence: keep it until the log has been read).
"""

from __future__ import annotations

import hmac
import os
import secrets
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from . import _crypto as C
from . import _format as F
from . import keys as K
from .errors import AccessDenied, ValidationError
from .identity import Identity
from .store import Store, StoreError
from .vault import Vault, create, discard_new, discard_unfinished_move


@dataclass(frozen=True)
class Moved:
    """The new vault (open, as its lead) and what went into it, with what its users need
    before their first open of it: its pin line (``Vault.pin_line``) and its location (the
    spelling the known-vaults file hashes, docs/format.md 8c). Each user records both
    (``vault.pins.add``, ``dvault pin add``), so that a vault built in its place before
    they open it is refused, not trusted as a first sight."""

    vault: Vault
    records: int
    canaries: int
    pin_line: str = field(init=False)
    location: str = field(init=False)

    def __post_init__(self) -> None:  # taken now: the caller may close the vault, which then says nothing
        from .pins import location_text
        object.__setattr__(self, "pin_line", self.vault.pin_line)
        object.__setattr__(self, "location", location_text(self.vault._s().url))

    def __repr__(self) -> str:
        return f"<Moved {self.records} records into vault {self.vault.id}>"


def move(src: Vault, url: str | os.PathLike[str], passphrase: str, *, lead: Identity,
         lead_name: str = "lead", kdf: F.KdfParams | None = None,
         progress: Callable[[int, int], None] | None = None) -> Moved:
    """Copy every record of ``src`` into a new vault at ``url`` led by ``lead``, whose
    recovery passphrase is ``passphrase``; returns it open.

    ``src`` must be opened with every class key and a managing role (the recovery
    passphrase or the lead's identity). The new vault gets the same schema text and index
    sizing. All or nothing: if anything fails after the new vault was created, it is
    removed again (the new vault is made first, so a refused destination costs no read
    of the source). A process killed part way cannot remove it: the new vault carries a
    ``moving`` mark from its first commit, signed by ``src``'s signer and cleared in the
    transaction that imports the records, and open() refuses a vault with the mark;
    running the move again sets such a vault aside (vault.moving: renamed and kept, never
    a finished one, never one whose mark this source did not sign). Audited on both sides: the source logs an ``export`` of every field,
    the new vault an ``import``."""
    def check() -> None:
        src._need_all_classes("moving the vault")
        if not src.role.manage:
            raise AccessDenied("only the security lead or the recovery passphrase moves a vault")
    src._guard("move", check)
    assert src._ring is not None
    old_lead = next((k.secret for k in src._ring.keys if k.kind == K.KIND_LEAD_VK), b"")
    if hmac.compare_digest(old_lead, lead.public.ed25519):
        raise ValidationError("the new vault needs a new lead identity: this one leads the old vault")
    plan = src._plan_active
    # left by an earlier run of this move that was killed part way: set aside, never dropped
    discard_unfinished_move(url, src)
    who, sign = src._plan_signer()  # the mark is ours: only a re-run of this move may set it aside
    # made first: a refused destination (a vault already there) costs no read of the source
    dest = create(url, passphrase, schema=src.schema.source, kdf=kdf, population=plan.population,
                  k=plan.k, precise=plan.mode == "precise", lead=lead, lead_name=lead_name, _moving_from=src.id,
                  _moving_sign=lambda m: who + sign(m))
    try:
        with _writers_out(src) as taken:
            # In a random order: kept in the old storage order, row k of the new vault would be
            # row k of the old one to anyone holding copies of both (threat model 6.6).
            secrets.SystemRandom().shuffle(taken)
            rows = [values for values, _ in taken]
            marked = [i for i, (_, canary) in enumerate(taken) if canary]
            dest.set_reason(src._auditor.reason)  # sealed, in the new log, to the new lead

            def finish(ids: list[str]) -> None:  # in the import's transaction: a finished vault has it all
                with dest._s().tx() as conn:
                    dest._s().put_meta(conn, {"moving": b""})  # empty: as no row (docs/format.md 12)
            ids = dest._add_many_impl(rows, progress, entry=("import", {"op": "move", "from": src.id}),
                                      canaries=marked, then=finish)
    except BaseException:
        discard_new(dest)
        raise
    return Moved(dest, len(ids), len(marked))


@contextmanager
def _writers_out(src: Vault) -> Iterator[list[tuple[dict, bool]]]:
    """Keep every other writer of records out of ``src`` from the copy until the new vault
    is filled, and yield the copy: every record (its values, and whether it is a canary).
    Why: records added while a move ran never reached the new vault, and the count in the
    log was taken before the copy, so nothing said so. Now a client that writes meanwhile
    waits (bounded; then it fails busy, writing nothing), and the move ends holding exactly
    the records the source holds, or refuses.

    The copy is one transaction that also commits the ``export`` entry (with the number
    copied), before anything reaches the new vault (fail-closed). A
    second transaction then holds the writers out while the new vault is filled: SQLite's
    write lock (BEGIN IMMEDIATE); on PostgreSQL the lead's keys lock, which every add,
    update, shred, rotation and re-index step takes shared, held across both (a session
    lock, Store.writers_out) so no writer gets in between. The rows are compared again with
    those copied at the start and the end of the hold, by every row's id and bytes
    (:func:`_rows_print`), not by their number: a writer that got in between (SQLite) or a
    database login that writes rows without the client (it honours no lock) refuses the
    move, also when it deleted one row and inserted another, or changed one in place."""
    store = src._s()
    with store.writers_out():
        taken, copied = _copy(src)
        with store.tx() as conn:
            store.lock_keys(conn)
            _same_rows(store, conn, copied, len(taken))
            yield taken
            _same_rows(store, conn, copied, len(taken))


def _rows_print(rows: Iterable[tuple[bytes, bytes]]) -> bytes:
    """SHA-256 over every record row's id and the SHA-256 of its bytes, in id order."""
    return C.sha256(b"".join(rid + C.sha256(data) for rid, data in sorted(rows)))


def _same_rows(store: Store, conn: Any, copied: bytes, n: int) -> None:
    if not C.mac_equal(_rows_print(store.scan_records(conn)), copied):
        raise StoreError(f"the source vault's records changed while the move copied {n} of them (a client "
                         "that did not wait, or a database login writing rows directly): nothing was moved; "
                         "stop it, then run the move again")


def _copy(src: Vault) -> tuple[list[tuple[dict, bool]], bytes]:
    """The records of ``src`` (and the :func:`_rows_print` of what was copied) and the move's
    ``export`` entry, in one write transaction that holds the lead's keys lock (see
    :func:`_writers_out`). No alarm is written for the
    canaries among them: an entry staff can read would tell them which records are decoys
    (vault.canaries)."""
    store = src._s()
    classes = src._plan(None)
    with store.tx() as conn:
        store.lock_keys(conn)
        canaries = src._canaries()
        taken, rows = [], []
        for rid, data in store.scan_records(conn):
            rec = src._decode_row(rid, data, classes)
            taken.append((dict(rec), rec.id in canaries))
            rows.append((rid, data))
        copied = _rows_print(rows)
        src._audit("export", "", {"fields": sorted(src.readable_fields), "purpose": None,
                                  "count": len(taken), "op": "move"})
        _same_rows(store, conn, copied, len(taken))  # under the log's lock: no client's add lands now
    return taken, copied


__all__ = ["move", "Moved"]
