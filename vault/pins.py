"""Known vaults: a user's client remembers each vault's keys, as SSH remembers host keys.

Why: a user's key slot is a sealed box, which anyone can make. Someone who can write the
database can replace a staff member's slot with one sealed to them but holding keys of
the writer's making (and re-MAC the schema with them). Everything in the database then
checks out for that user, and what they *add* is encrypted under the writer's keys
(tests/test_users.py shows it). A pin closes this after the first open: the client keeps,
per vault id, a fingerprint of the vault's meta key, which no rotation changes and which
nobody without the real key can reproduce, and refuses a vault whose keys differ.

The fingerprint is ``HMAC-SHA256(meta key, "dvault/v1/keyring-pin" || vault id)[0:16]``:
a MAC, so the file says nothing about the key. The file is text, one ``vault-id
fingerprint`` line (both hex) per vault, after ``#`` comment lines (docs/format.md 8c).
"""

from __future__ import annotations

import os
from pathlib import Path

from . import _crypto as C
from . import _format as F
from ._files import replace_private, write_private
from .errors import IntegrityError, VaultError

HEADER = "# defenders-vault known vaults: vault id, then a fingerprint of its keys (no secret)\n"


def fingerprint(vault_id: bytes, meta_key: bytes) -> str:
    return C.hmac_sha256(meta_key, F.LABEL_KEYRING_PIN + vault_id)[:16].hex()


def _read(path: Path) -> dict[str, str]:
    try:
        text = path.read_text("ascii")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError):
        raise VaultError(f"cannot read the known-vaults file {path}") from None
    pins: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2 or len(parts[0]) != 2 * F.ID_LEN or len(parts[1]) != 32:
            raise VaultError(f"the known-vaults file {path} is malformed; restore or remove it")
        pins[parts[0]] = parts[1]
    return pins


def check(path: str | os.PathLike[str], vault_id: bytes, meta_key: bytes, *, record: bool = True) -> None:
    """Refuse the vault if its keys differ from those recorded; record it on first sight
    unless ``record`` is false (vault.open records only once every other check passed)."""
    _record(Path(path), vault_id.hex(), fingerprint(vault_id, meta_key), write=record)


def add(path: str | os.PathLike[str], line: str) -> None:
    """Record a vault before its first open, from the ``vault-id fingerprint`` line its lead
    sent (``Vault.pin_line``): that first open is then checked too, not trusted. Why: the
    slot substitution above works on a client that has never seen the vault; a line that
    came by another channel than the database leaves the substitute nothing to match."""
    parts = line.split() if isinstance(line, str) else []
    if len(parts) != 2 or not all(_is_hex(x, n) for x, n in zip(parts, (2 * F.ID_LEN, 32))):
        raise VaultError("a pin is the vault id and its fingerprint: 32 and 32 hex digits")
    _record(Path(path), parts[0].lower(), parts[1].lower())


def _is_hex(text: str, length: int) -> bool:
    return len(text) == length and all(c in "0123456789abcdefABCDEF" for c in text)


def _record(p: Path, vid: str, mine: str, *, write: bool = True) -> None:
    pins = _read(p)
    known = pins.get(vid)
    if known is not None:
        if not C.mac_equal(known.encode(), mine.encode()):
            raise IntegrityError("this vault's keys differ from those you opened it with before: "
                                 "your key slot may have been replaced; do not add records, tell the lead")
        return
    if not write:
        return
    pins[vid] = mine
    data = (HEADER + "".join(f"{v} {fp}\n" for v, fp in sorted(pins.items()))).encode("ascii")
    if p.exists():
        replace_private(p, data)
    else:
        try:
            p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as e:
            raise VaultError(f"cannot create the folder of the known-vaults file {p}: {e.strerror}") from None
        write_private(p, data)
