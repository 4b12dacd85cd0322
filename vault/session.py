"""What every collaborator of an open vault shares: the store, the vault's id and schema,
who opened it (user, role, identity), the database version the handle signs, and the
warnings the CLI prints. It holds no key: the keys are vault.access's."""

from __future__ import annotations

import os
import threading

from . import _format as F
from . import schema as S
from . import users as U
from .errors import VaultClosed, WrongThread
from .identity import Identity
from .store import Store


class Session:
    """One open handle's shared, key-free state. ``store()`` raises VaultClosed once closed,
    and WrongThread in a thread other than the one that made the handle: every read and
    write of a handle goes through it, so a second thread is stopped before it touches the
    connection or the handle's half-made state (which the first thread would otherwise
    read as tampering). ``close()`` is allowed from any thread: it only drops references,
    and a watchdog that locks a vault away is a reason to call it from elsewhere."""

    def __init__(self, store: Store, vault_id: bytes, schema: S.Schema, user: U.User | None = None,
                 identity: Identity | None = None, db_version: int = F.DB_SCHEMA_VERSION) -> None:
        self._store: Store | None = store
        self.vid = vault_id
        self.schema = schema
        self.user = user
        self.role: S.Role = (schema.roles[user.role] if user is not None
                             else next(r for r in schema.roles.values() if r.manage))
        self.identity: Identity | None = identity
        # the database schema version this handle opened (or upgraded) the vault at: the only
        # one it signs (vault.statement.signable_version), and the one the statement must name
        self.db_known = db_version
        #: what the lead should know (a key slot the statement names is missing): the CLI prints them
        self.warnings: list[str] = []
        self.pid = os.getpid()
        self.thread = threading.get_ident()

    def store(self) -> Store:
        if self._store is None:
            raise VaultClosed("the vault is closed")
        # a forked worker (vault._parallel) is another process: its copy of the handle is its own
        if threading.get_ident() != self.thread and os.getpid() == self.pid:
            raise WrongThread()
        return self._store

    def adopt(self) -> None:
        """Make the calling thread the handle's owner: for a caller that hands the handle on
        to another thread and no longer uses it itself (tests that make two handles wait on
        each other's locks do)."""
        self.thread = threading.get_ident()

    @property
    def closed(self) -> bool:
        return self._store is None

    def close(self) -> None:
        if self._store is not None:
            self._store.dispose()
        self._store = None
