"""One exception hierarchy, rooted in :class:`VaultError`.

Messages name records, fields and classes, never values: an exception may end up
in a log, a crash report or a terminal someone is filming.
"""

from __future__ import annotations


class VaultError(Exception):
    """Base of every error the vault raises on purpose.

    It never shows the exception it was raised while handling (``__context__`` reads None,
    and setting it does nothing). Why: ``raise VaultError(...) from None`` only hides that
    exception from the traceback printer, and a decoder's or parser's error holds the very
    input it failed on (a UnicodeDecodeError's ``object``, a JSONDecodeError's ``doc``, an
    int() ValueError's message): a crash reporter or a logger walking ``__context__`` would
    find the plaintext. Code that raises inside a handler still raises outside it where it
    can; this is the net under it. (The interpreter keeps the reference internally until
    the error is dropped: memory is not protected, docs/threat-model.md 4.2.)"""

    @property
    def __context__(self) -> BaseException | None:
        return None

    @__context__.setter
    def __context__(self, value: BaseException | None) -> None:
        pass


class WrongPassphrase(VaultError):
    """The passphrase (or identity) opens no key slot of this vault."""

    def __init__(self, message: str = "wrong passphrase") -> None:
        super().__init__(message)


class IntegrityError(VaultError):
    """Stored data failed authentication: tampering, corruption or a swapped blob."""

    def __init__(self, what: str, *, record_id: str | None = None, field: str | None = None) -> None:
        self.record_id = record_id
        self.field = field
        where = []
        if record_id is not None:
            where.append(f"record {record_id}")
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(f"{what}" + (f" ({', '.join(where)})" if where else ""))


class UnsafeFile(VaultError):
    """A file the client trusts (identity, known vaults, config), or a folder above it,
    belongs to another user or others can write it: refused, as ssh's StrictModes does."""


class KdfTooWeak(IntegrityError):
    """A stored Argon2id cost is below the floor: a downgrade we refuse to follow."""


class UnsupportedVersion(VaultError):
    """The vault was written by a newer release than this one."""


class SchemaError(VaultError):
    """A schema definition is malformed or unsafe."""


class ValidationError(VaultError, ValueError):
    """A value does not fit its field. Names the field and the rule, never the value."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


class BadShare(ValidationError):
    """A recovery share that cannot be used: a word not in the SLIP-39 list, a failed
    checksum, a share of another vault or of an older split. ``share`` is its number in the
    order given (1-based), ``word`` the word's position in it (1-based) when one is named.
    The message names positions, never a word of the share."""

    def __init__(self, message: str, *, share: int | None = None, word: int | None = None) -> None:
        self.share = share
        self.word = word
        super().__init__(message)


def utf8(text: str, message: str, *, field: str | None = None) -> bytes:
    """``text`` as UTF-8, or ValidationError(message). Why it can fail: Python passes bytes
    that were not UTF-8 (an env var, a file name, argv) through as lone surrogates, which
    would otherwise surface as a UnicodeEncodeError quoting the offending text."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        pass  # raised below, outside the handler: inside it, __context__ would keep the text
    raise ValidationError(message, field=field)


class NotFound(VaultError, KeyError):
    """No such record (or vault)."""

    def __str__(self) -> str:  # KeyError would add quotes
        return str(self.args[0]) if self.args else "not found"


class VaultExists(VaultError):
    """Refusing to create a vault over an existing one."""


class UnfinishedMove(VaultError):
    """The vault is the destination of a move (vault.move) that never finished: it may hold
    only part of the records, so it is not opened; running the move again (from the same
    source) sets it aside and makes a new one."""


class AccessDenied(VaultError):
    """The caller's keys do not open this field class."""


class KeysChanged(VaultError):
    """Another process changed this vault's keys (a rotation, revocation or passphrase
    change) after this handle loaded them. Writing with the old keys could seal data under a
    key version about to be destroyed, so the handle refuses; open the vault again."""

    def __init__(self, message: str = "the vault's keys changed since this handle opened it (a rotation, "
                                      "revocation or passphrase change elsewhere); open it again") -> None:
        super().__init__(message)


class Unavailable(VaultError):
    """A file or the database the vault lives on cannot be used at this moment: the disk is
    full, the file system or the database is read-only, a file cannot be read, the vault's
    folder went away, or the database connection was lost. The operation's transaction was
    rolled back whole; nothing was half-written. Fix the cause and run it again."""


class VaultClosed(VaultError):
    """The vault was closed; its key references are gone."""


class WrongThread(VaultError):
    """A vault handle used from a thread other than the one that opened it. A handle's
    connection, key caches and transaction state are not for sharing: two threads at once
    read each other's half-made state as tampering. Open one handle per thread."""

    def __init__(self, message: str = "this vault handle is used by another thread: open one handle "
                                      "per thread") -> None:
        super().__init__(message)


class BadBackup(IntegrityError):
    """A backup or ledger file that is corrupt, truncated, of another vault, or forged."""
