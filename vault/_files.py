"""Creating private files: the one place that writes key material or exports to disk."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import VaultError, VaultExists


def write_private(path: str | os.PathLike[str], data: bytes) -> Path:
    """Create ``path`` with mode 0600 and write ``data``; refuse to overwrite anything, and
    leave no half-written file behind if the write fails."""
    p = Path(path)
    try:
        fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        raise VaultExists(f"refusing to overwrite {p}") from None
    except OSError as e:
        raise VaultError(f"cannot create {p}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
    except BaseException:
        p.unlink(missing_ok=True)
        raise
    return p
