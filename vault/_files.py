"""Creating private files: the one place that writes key material or exports to disk."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import VaultError, VaultExists


def write_private(path: str | os.PathLike[str], data: bytes, *, error: type[VaultError] = VaultError) -> Path:
    """Create ``path`` with mode 0600 and write ``data``; refuse to overwrite anything, and
    leave no half-written file behind if the write fails. ``error``: the class raised when
    the file cannot be created (e.g. the store's own StoreError)."""
    p = Path(path)
    try:
        fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        raise VaultExists(f"refusing to overwrite {p}") from None
    except OSError as e:
        raise error(f"cannot create {p}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())  # an export or identity file that a power cut leaves empty is lost
    except BaseException as e:
        p.unlink(missing_ok=True)
        if isinstance(e, OSError):  # a full disk or an I/O error: one line, no half file
            raise error(f"cannot write {p}: {e.strerror}") from None
        raise
    _fsync_dir(p.parent)
    return p


def replace_private(path: str | os.PathLike[str], data: bytes, *, error: type[VaultError] = VaultError) -> Path:
    """Replace ``path`` with ``data`` atomically: a 0600 temporary file beside it, fsynced,
    renamed over it, and the directory fsynced, so a crash or power cut leaves either the
    old file or the new one, never half of each and never neither."""
    p = Path(path)
    tmp = p.with_name(f"{p.name}.tmp-{os.urandom(4).hex()}")
    write_private(tmp, data, error=error)
    try:
        os.replace(tmp, p)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise error(f"cannot replace {p}: {e.strerror}") from None
        raise
    _fsync_dir(p.parent)
    return p


def _fsync_dir(directory: Path) -> None:
    """Make a created or renamed directory entry durable (POSIX; a no-op where a directory
    cannot be opened, e.g. on Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
