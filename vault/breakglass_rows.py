"""The ``dv_reveals`` table of break-glass requests and grants (vault.breakglass), apart
so that a shred (vault.records) and a revocation (vault.enrol) can delete a record's or a
user's rows without depending on the break-glass workflow."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, Integer, LargeBinary, String, Table, delete

from .store import metadata

reveals = Table("dv_reveals", metadata,
                Column("req_id", String(32), primary_key=True),
                Column("requester", String(32), nullable=False),
                Column("record_id", LargeBinary(16), nullable=False),
                Column("field", String(64), nullable=False),
                Column("reason", LargeBinary, nullable=False),  # sealed to the lead
                Column("grant", LargeBinary, nullable=True),  # sealed to the requester, signed
                Column("created", Integer, nullable=False),
                Column("sig", LargeBinary, nullable=True))  # the requester's signature (schema v8)


def forget(conn: Any, *, record_id: bytes | None = None, requester: str | None = None) -> int:
    """Delete every request (and its grant, if approved) about one record or by one user, in
    the caller's transaction; returns how many. A shred and a revocation call it: a grant is
    the value sealed to an identity key that never rotates, and a request row names the
    record, so either left behind would outlive the shred or the revocation."""
    if (record_id is None) == (requester is None):
        raise ValueError("forget() takes a record id or a requester")
    where = reveals.c.record_id == record_id if record_id is not None else reveals.c.requester == requester
    return int(conn.execute(delete(reveals).where(where)).rowcount)
