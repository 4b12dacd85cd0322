"""The non-secret facts an operator's status screen shows (Vault.status)."""

from __future__ import annotations

from typing import Any

from . import index as I
from . import keys as K
from .plans import Plans
from .session import Session
from .statement import PASSPHRASE


def status_of(ses: Session, plans: Plans) -> dict[str, Any]:
    """Ids, sizes, KDF cost, the index plan, accepted schema risks and the transport."""
    store = ses.store()
    with store.tx(write=False) as conn:
        n = store.count_records(conn)
        slots = store.get_slots(conn)
        meta = store.get_meta(conn)
    kdf = [K.passphrase_slot_params(s[2]) for s in slots if s[1] == PASSPHRASE]
    schema, user = ses.schema, ses.user
    return {
        "vault_id": ses.vid.hex(),
        "opened_as": (f"user {user.user_id} ({user.name})" if user else "passphrase"),
        "role": ses.role.name,
        "schema": f"{schema.name} v{schema.version}",
        "records": n,
        "classes": list(schema.classes),
        "slots": len(slots),
        "kdf": [f"argon2id t={p.t} m={p.m_kib}KiB p={p.p}" for p in kdf],
        "index": {**I.plan_status(plans.active, n), "reindex_pending": plans.pending is not None},
        "rotation_pending": bool(meta.get("rotation")),
        "transport": store.transport,  # how the database connection is protected (vault.postgres)
        "warnings": schema.warnings() + I.plan_warnings(plans.active, n)
        + ([store.transport] if store.transport.startswith("NOT") else []),
    }
