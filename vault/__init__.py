"""defenders-vault: a privacy-hardened store for the records of people at risk.

Public API::

    import vault
    with vault.create("sqlite:///dd2026.vault", passphrase=pw) as v:
        rid = v.add({"legal_name": "Amira Haddad", "email": "amira@example.org"})
        rec = v.get(rid, fields=["email"])

The names below are loaded on first use (PEP 562): ``import vault`` itself reads only the
error classes and the format constants, so a front end that never opens a vault (``dvault
--help``, ``--version``) does not pay for SQLAlchemy and the crypto libraries.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._format import KDF_DEFAULT, KDF_FLOOR, KdfParams
from .errors import (
    AccessDenied,
    BadBackup,
    BadShare,
    IntegrityError,
    KdfTooWeak,
    KeysChanged,
    NotFound,
    SchemaError,
    Unavailable,
    UnfinishedMove,
    UnsafeFile,
    UnsupportedVersion,
    ValidationError,
    VaultClosed,
    VaultError,
    VaultExists,
    WrongPassphrase,
    WrongThread,
)

if TYPE_CHECKING:
    from .audit import RecordCheck
    from .moving import Moved
    from .record import Record
    from .restoring import Restored
    from .retention import PurgeReport
    from .schema import Field, Schema
    from .schema import load as load_schema
    from .store import StoreError
    from .subject import SubjectData
    from .vault import Vault, create, move, open, open_with_shares
    from .verify import Report as VerifyReport

__version__ = "0.1.0"

#: public name -> (module, attribute), imported on first access
_LAZY = {
    "create": ("vault", "create"), "open": ("vault", "open"), "Vault": ("vault", "Vault"),
    "move": ("vault", "move"), "Moved": ("moving", "Moved"), "RecordCheck": ("audit", "RecordCheck"),
    "Record": ("record", "Record"), "Schema": ("schema", "Schema"), "Field": ("schema", "Field"),
    "load_schema": ("schema", "load"), "StoreError": ("store", "StoreError"),
    "open_with_shares": ("vault", "open_with_shares"),
    "PurgeReport": ("retention", "PurgeReport"), "SubjectData": ("subject", "SubjectData"),
    "restore": ("vault", "restore"), "Restored": ("restoring", "Restored"),
    "VerifyReport": ("verify", "Report"),
}


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'vault' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f".{module}", __name__), attr)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "create", "open", "move", "Moved", "Vault", "RecordCheck", "Record", "Schema", "Field", "load_schema", "KdfParams",
    "PurgeReport", "SubjectData",
    "KDF_DEFAULT", "KDF_FLOOR",
    "VaultError", "WrongPassphrase", "IntegrityError", "KdfTooWeak", "SchemaError", "ValidationError",
    "NotFound", "VaultExists", "AccessDenied", "VaultClosed", "UnsupportedVersion", "StoreError", "KeysChanged",
    "UnfinishedMove", "UnsafeFile", "BadShare", "open_with_shares", "BadBackup", "restore", "Restored",
    "Unavailable", "VerifyReport", "WrongThread",
    "__version__",
]
