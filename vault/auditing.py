"""A handle's reads of its audit log: the filtered listing, verification, checkpoints, the
lead's quarantine decisions and the record check (rows against the states the log names).

:class:`AuditView` reads ``dv_audit`` through vault.audit and writes its own entries
(``audit_read``, ``audit_verify``, ``check_records``, ...) through vault.journal.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from . import _crypto as C
from . import _format as F
from . import audit as A
from . import audit_replay as AR
from . import audit_trust as T
from . import envelope as E
from . import notes as N
from . import users as U
from .access import Access
from .audit_rows import detail_of
from .errors import AccessDenied, IntegrityError, ValidationError
from .journal import Journal
from .pseudonyms import Pseudonyms
from .records import Records


def _check_seq(seq: Any) -> None:
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        raise ValidationError("an audit entry number is a positive integer")


class AuditView:
    """The log as this opener may read it, and the lead's decisions about it."""

    def __init__(self, access: Access, journal: Journal, records: Records, pseudonyms: Pseudonyms) -> None:
        self.access = access
        self.ses = access.ses
        self.journal = journal
        self.records = records
        self.pseudonyms = pseudonyms

    def entries(self, *, actor: str | None = None, action: str | None = None, since_ms: int | None = None,
                until_ms: int | None = None, target: str | None = None) -> list[dict[str, Any]]:
        """See Vault.audit_entries."""
        for label, ms in (("since_ms", since_ms), ("until_ms", until_ms)):
            if ms is not None and (isinstance(ms, bool) or not isinstance(ms, int)):
                raise ValidationError(f"{label} must be Unix time in milliseconds (an integer)")
        if target is not None:  # before the entry: a bad one is one error (a refusal: 'denied')
            asked = target
            target = self.journal.guard("audit_read", lambda: self.pseudonyms.audit_target_of(asked))
        self.journal.record("audit_read", "", {"filters": [x for x, v in (
            ("actor", actor), ("action", action), ("since", since_ms), ("until", until_ms), ("target", target))
            if v is not None]})
        out, kept = [], []
        manage = self.ses.role.manage
        me = A.actor_id(self.journal.auditor.actor)
        for e in A.read_entries(self.ses.store()):
            aid = A.actor_id(e.actor)
            if not manage and (aid != me or e.action == "alarm"):
                continue  # staff and tools see their own entries, but never an alarm: it would
                # name the decoy they touched (its target); the lead sees everything
            if (actor and aid != actor) or (action and e.action != action) \
                    or (since_ms is not None and e.at < since_ms) or (until_ms is not None and e.at > until_ms):
                continue
            if target and (e.action in A.UNSIGNED_ACTIONS  # anyone with table access can chain one
                           or (e.target != target
                               and not (e.action in ("search", "reveal_list") and f'"{target}"' in e.detail
                                        and target in (detail_of(e) or {}).get("targets", ())))):
                continue  # a search names its matches in detail.targets, a lead's request list those shown
            shown = {"at": e.at, "actor": aid, "action": e.action, "target": e.target,
                     "detail": detail_of(e) or {}, "reason": self.open_reason(e.reason)}
            # only the lead sees entry numbers: another role's own entries would skip the
            # number of each hidden alarm, telling a decoy from a real record
            out.append({"seq": e.seq, **shown} if manage else shown)
            kept.append(e)
        store = self.ses.store()
        flags = T.mark(kept, self.access.known_actors(), lambda: A.read_entries(store, damaged=True),
                       self.access.deciders)
        return [{**shown, **flag} for shown, flag in zip(out, flags, strict=True)]

    def open_reason(self, sealed: bytes) -> str | None:
        if not sealed or not self.ses.role.manage:
            return None
        ident = self.ses.identity
        opener = ident.unseal if ident is not None else self.access.recovery_unseal
        try:
            kind, plain = N.open_note_as((F.KIND_REASON_PADDED, F.KIND_REASON), sealed, opener)
            return (E.unpad(plain) if kind == F.KIND_REASON_PADDED else plain).decode("utf-8")
        except (C.AuthFailure, E.Malformed, UnicodeDecodeError, TypeError):
            return None

    def verify(self, against: str | None = None) -> Any:
        # ``is not None``: a falsy non-checkpoint (0, b"", []) is refused, not taken for "none given"
        cp = A.Checkpoint.parse(against) if against is not None and against != "" else None
        self.journal.record("audit_verify", "", {"checkpoint": cp.seq if cp else None})
        return A.verify(A.read_entries(self.ses.store(), damaged=True), self.access.known_actors(), cp,
                        self.access.deciders())

    def problem(self, seq: int) -> dict[str, Any]:
        self.journal.guard("audit_read", lambda: self.access.need_manage("examining an audit entry"))
        _check_seq(seq)
        self.journal.record("audit_read", "", {"filters": ["seq"]})
        entries = A.read_entries(self.ses.store())
        decide = self.access.deciders()
        return T.describe(entries, self.access.known_actors(), decide, seq, *self._kinds(entries, decide))

    def quarantine(self, seq: int) -> str:
        self.journal.guard("quarantine", lambda: self.access.need_manage("quarantining an audit entry"))
        _check_seq(seq)
        return self.journal.guard("quarantine", lambda: self._quarantine(seq))

    def _quarantine(self, seq: int) -> str:
        decide = self.access.deciders()
        if self.journal.auditor.actor not in decide:
            raise AccessDenied("quarantining an audit entry needs the security lead's identity or the recovery "
                               "passphrase")
        entries = A.read_entries(self.ses.store())
        detail, why = T.quarantine_detail(entries, self.access.known_actors(), decide, seq,
                                          *self._kinds(entries, decide))
        self.journal.record(T.QUARANTINE, "", detail)
        return why

    def refused_states(self) -> set[int] | None:
        """The entries whose record states the check would not take (refused, or quarantined),
        or None if the log does not verify: for subject export, which follows a record's
        states back to its add and must not be led by a colleague's forged entry."""
        entries = A.read_entries(self.ses.store())
        decide = self.access.deciders()
        verdict = A.verify(entries, self.access.known_actors(), deciders=decide)
        if not verdict.ok:
            return None
        held = frozenset(verdict.quarantined)
        second, states, may = self._kinds(entries, decide)
        taken = AR.replay(entries, held, decide, may, AR.kinds_of(entries, held, decide, second, states))
        return set(taken.refused) | set(held)

    def _kinds(self, entries: list[Any], decide: set[bytes]) -> tuple[bool, Any, AR.Rights]:
        """What the record check judges entries' states by (their kind, the parts' key, whose
        role may write what): for the check, and for describing an entry as it would."""
        store, schema = self.ses.store(), self.ses.schema
        with store.tx(write=False) as conn:
            users = self.access.verified_users(conn, statement=False)
        held = T.standing(entries, decide)[0]
        may = AR.rights(users, schema.roles, schema.classes, schema.purposes, entries, decide, U.REVOKED, held)
        return self.records.second_kind(), self.access.states_v2, may

    def checkpoint(self) -> str:
        self.journal.record("audit_checkpoint", "", {})
        seq, h = A.head(self.ses.store())
        assert self.access.signer is not None
        return str(A.make_checkpoint(seq, h, self.journal.auditor.actor, self.access.signer))

    def check_records(self, *, accept: bool = False) -> A.RecordCheck:
        """See Vault.check_records."""
        self.journal.guard("check_records", lambda: self.access.need_manage("checking records against the log"))
        known = self.access.known_actors()
        decide = self.access.deciders()
        try:
            if accept:
                out, drop, put = self.journal.around("restate", lambda: self._compare(accept, known, decide),
                                                     lambda r: ("", {
                    "accepted": True, **r[0].counts(), **self.journal.states(r[1], r[2])}))
            else:
                out, _, _ = self._compare(accept, known, decide)
        except IntegrityError:
            self.journal.record("check_records", "", {"log_ok": False})
            raise
        if not accept:
            self.journal.record("check_records", "", out.counts())
        return out

    def _compare(self, accept: bool, known: set[bytes], decide: set[bytes]
                 ) -> tuple[A.RecordCheck, list[str], list[str]]:
        store = self.ses.store()
        with store.tx(write=accept) as conn:
            if not store.is_sqlite and accept:  # no append can land between our reads and our entry
                store.lock_append(conn)
            elif not store.is_sqlite:  # one snapshot for the log and the rows
                store.raw(conn, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            entries = A.read_entries(store)
            rows, damaged = [], []
            everything: dict[str, list[str] | None] = {c: None for c in self.access.current}
            scanned = 0
            for rid, data in store.scan_records(conn):
                scanned += 1
                try:
                    self.records.open_row(rid, data, everything)
                except IntegrityError:
                    damaged.append(rid.hex())
                try:
                    rows.append((rid, self.records.state_token(rid, data)))
                except IntegrityError:  # malformed: no DEK ids to name its state (already damaged)
                    pass
            second, states, may = self._kinds(entries, decide)  # (its read joins this transaction)
            found = A.compare_states(entries, known, rows, tuple(damaged), decide, may, second, states)
            found = (dataclasses.replace(found[0], rows=scanned), found[1], found[2])  # unparseable ones too
            if accept and found[0].damaged:
                raise IntegrityError(f"{len(found[0].damaged)} record row(s) fail authentication and cannot be "
                                     "accepted: restore them from a backup, or shred them, first")
            return found
