"""defenders-vault: a privacy-hardened store for the records of people at risk.

Public API::

    import vault
    with vault.create("sqlite:///dd2026.vault", passphrase=pw) as v:
        rid = v.add({"legal_name": "Amira Haddad", "email": "amira@example.org"})
        rec = v.get(rid, fields=["email"])
"""

from ._format import KDF_DEFAULT, KDF_FLOOR, KdfParams
from .errors import (AccessDenied, IntegrityError, KdfTooWeak, KeysChanged, NotFound, SchemaError,
                     UnfinishedMove, UnsafeFile, UnsupportedVersion, ValidationError, VaultClosed, VaultError, VaultExists,
                     WrongPassphrase)
from .move import Moved, move
from .record import Record
from .schema import Field, Schema
from .schema import load as load_schema
from .store import StoreError
from .audit import RecordCheck
from .vault import Vault, create, open

__version__ = "0.1.0"

__all__ = [
    "create", "open", "move", "Moved", "Vault", "RecordCheck", "Record", "Schema", "Field", "load_schema", "KdfParams",
    "KDF_DEFAULT", "KDF_FLOOR",
    "VaultError", "WrongPassphrase", "IntegrityError", "KdfTooWeak", "SchemaError", "ValidationError",
    "NotFound", "VaultExists", "AccessDenied", "VaultClosed", "UnsupportedVersion", "StoreError", "KeysChanged",
    "UnfinishedMove", "UnsafeFile",
    "__version__",
]
