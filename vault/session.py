"""What every collaborator of an open vault shares: the store, the vault's id and schema,
who opened it (user, role, identity), the database version the handle signs, and the
warnings the CLI prints. It holds no key: the keys are vault.access's."""

from __future__ import annotations

import os

from . import _format as F
from . import schema as S
from . import users as U
from .errors import VaultClosed
from .identity import Identity
from .store import Store


class Session:
    """One open handle's shared, key-free state. ``store()`` raises VaultClosed once closed."""

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

    def store(self) -> Store:
        if self._store is None:
            raise VaultClosed("the vault is closed")
        return self._store

    @property
    def closed(self) -> bool:
        return self._store is None

    def close(self) -> None:
        if self._store is not None:
            self._store.dispose()
        self._store = None
