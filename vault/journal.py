"""The "record this access" interface every collaborator writes the audit log through.

:class:`Journal` wraps the handle's vault.audit.Auditor (its actor, signer and the reason
sealed to the lead) and names records by their audit pseudonym (vault.pseudonyms). The
log itself (``dv_audit``: chain, signatures, verification) is vault.audit's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from .audit import Auditor
from .errors import AccessDenied
from .pseudonyms import Pseudonyms
from .session import Session

T = TypeVar("T")


class Journal:
    """Append this handle's entries: one call per access, in the caller's transaction when
    there is one (vault.store joins it)."""

    def __init__(self, ses: Session, auditor: Auditor, pseudonyms: Pseudonyms) -> None:
        self.ses = ses
        self.auditor = auditor
        self.pseudonyms = pseudonyms

    @staticmethod
    def states(drop: Iterable[str] = (), put: Iterable[str] = ()) -> dict[str, Any]:
        """The ``state`` member of an entry's detail: tokens sorted, empty lists left out."""
        out = {k: sorted(v) for k, v in (("drop", drop), ("put", put)) if v}
        return {"state": out} if out else {}

    def record(self, action: str, target: str = "", detail: dict[str, Any] | None = None) -> None:
        """Write one entry (fail-closed: an entry that cannot be written is an error)."""
        self.auditor.append(self.ses.store(), action, target, detail)

    def around(self, action: str, work: Callable[[], T], describe: Callable[[T], tuple[str, dict[str, Any]]]) -> T:
        """Run a read and write its entry, ``describe(result)``, in one transaction (see
        Auditor.append_after)."""
        out: T = self.auditor.append_after(self.ses.store(), action, work, describe)
        return out

    def guard(self, op: str, call: Callable[[], T]) -> T:
        """Run ``call``; an AccessDenied is itself audited ('denied') before it propagates,
        once: guarded calls nest (remove_user rotates, a rotation re-indexes)."""
        try:
            return call()
        except AccessDenied as e:
            if not getattr(e, "logged", False):
                e.logged = True  # type: ignore[attr-defined]
                self.record("denied", "", {"op": op, "why": str(e)})
            raise

    def target(self, record_id: str) -> str:
        """The record's audit pseudonym (never its id or a name); issued on first use."""
        return self.pseudonyms.audit_name(record_id)
