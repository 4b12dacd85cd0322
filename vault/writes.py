"""Writes of stored records through the facade: an update, and an import that may carry
updates (the Vault's mixin, as vault.lifecycle is its mixin for a vault's whole life).

Why apart: both log what they were refused (a ``denied`` entry, or an attempt that changed
nothing) outside the transaction that failed, and an import's updates take their rows'
locks before the log's, which every writer must do alike on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any, cast

from .access import Access
from .args import check_progress, check_rows
from .canaries import Canaries
from .errors import IntegrityError, KeysChanged, NotFound, ValidationError
from .journal import Journal
from .pseudonyms import record_id_bytes
from .records import Records
from .session import Session


class WriteCalls:
    _ses: Session
    _access: Access
    _journal: Journal
    _records: Records
    _canaries: Canaries

    def import_rows(self, rows: Iterable[Mapping[str, Any]], progress: Callable[[int, int], None] | None = None,
                    *, updates: Iterable[tuple[str, Mapping[str, Any]]] = ()) -> list[str]:
        """add_many for bulk imports (validated first, one transaction), logged as ``import``;
        ``progress(done, total)`` as rows are encrypted. ``updates`` (record id, values):
        changes to stored records the same file carries, each an audited update, in the same
        transaction: a failure of any leaves nothing of the import written."""
        check_progress(progress)
        rows = check_rows(rows, "import_rows")
        changes = check_rows(updates, "import_rows")
        if not all(isinstance(c, tuple) and len(c) == 2 for c in changes):
            raise ValidationError("import_rows() takes updates as (record id, values) pairs")
        j = self._journal
        j.guard("import", lambda: self._access.need_writable("importing records"))
        for record_id, values in changes:  # each refused before anything is written, logged as update() logs it
            self._may_update(values)
            record_id_bytes(record_id)
        store, doing = self._ses.store(), cast(list[tuple[str, Mapping[str, Any]]], [])

        def update() -> None:
            with store.tx() as conn:  # every row first, then the log's lock (Store.lock_records)
                store.lock_records(conn, [record_id_bytes(record_id) for record_id, _ in changes])
                for record_id, values in changes:
                    doing[:] = [(record_id, values)]
                    j.guard("update", partial(self._records.update, record_id, values))
                doing.clear()
        try:
            if rows:
                out = j.guard("import", lambda: self._records.add_many(rows, progress, entry=("import", {}),
                                                                       before_entry=update))
            else:
                with store.tx() as conn:
                    self._access.check_keys(conn)  # the keys' lock before the rows', as every writer
                    update()
                out = []
        except (NotFound, ValidationError, IntegrityError, KeysChanged):
            if doing:  # the update that failed: its attempt, logged once the import is rolled back
                self._attempted(*doing[0])
            raise
        self._canaries.alarm_if_canary([record_id for record_id, _ in changes], "update")
        return out

    def update(self, record_id: str, values: Mapping[str, Any]) -> None:
        """Change fields (None removes one); touched classes get fresh DEKs and ciphertexts."""
        j = self._journal
        self._may_update(values)
        record_id_bytes(record_id)  # a malformed id is refused before anything is logged
        try:
            j.guard("update", lambda: self._records.update(record_id, values))  # its entry commits with the row
        except (NotFound, ValidationError, IntegrityError, KeysChanged):
            self._attempted(record_id, values)
            raise
        self._canaries.alarm_if_canary([record_id], "update")

    def _may_update(self, values: Any) -> None:
        """AccessDenied (logged as 'denied') for a field of a class this role cannot write."""
        if isinstance(values, Mapping):
            def may_write() -> None:
                for n in values:
                    self._access.need_class(self._ses.schema.field(n).cls, f"field {n!r}")
            self._journal.guard("update", may_write)

    def _attempted(self, record_id: str, values: Any) -> None:
        """An update that changed nothing is logged too (its fields, no state)."""
        j = self._journal
        fields = sorted(map(str, values)) if isinstance(values, Mapping) else []
        j.record("update", j.target(record_id), {"fields": fields})
        self._canaries.alarm_if_canary([record_id], "update")

