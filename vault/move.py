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
from dataclasses import dataclass
from typing import Callable

from . import _format as F
from . import keys as K
from .errors import AccessDenied, ValidationError
from .identity import Identity
from .vault import Vault, create, discard_new, discard_unfinished_move


@dataclass(frozen=True)
class Moved:
    """The new vault (open, as its lead) and what went into it."""

    vault: Vault
    records: int
    canaries: int

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
    a finished one, never one whose mark this source did not sign). Audited on both sides: the source logs an ``export`` of every field
    (and an ``alarm`` per canary, as any export does), the new vault an ``import``."""
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
                  k=plan.k, lead=lead, lead_name=lead_name, _moving_from=src.id,
                  _moving_sign=lambda m: who + sign(m))
    try:
        src._audit("export", "", {"fields": sorted(src.readable_fields), "purpose": None,
                                  "count": src.count(), "op": "move"})
        canaries = src._canaries()
        taken = []
        for rec in src._records_impl():
            if rec.id in canaries:
                src._alarm(rec.id, "move")
            taken.append((dict(rec), rec.id in canaries))
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


__all__ = ["move", "Moved"]
