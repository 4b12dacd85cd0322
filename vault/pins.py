"""Known vaults: a user's client remembers each vault's keys, as SSH remembers host keys.

Why: a user's key slot is a sealed box, which anyone can make. Someone who can write the
database can replace a staff member's slot with one sealed to them but holding keys of
the writer's making (and re-MAC the schema with them). Everything in the database then
checks out for that user, and what they *add* is encrypted under the writer's keys
(tests/test_users.py shows it). A pin closes this after the first open: the client keeps,
per vault id, a fingerprint of the vault's meta key, which no rotation changes and which
nobody without the real key can reproduce, and refuses a vault whose keys differ.

The fingerprint is ``HMAC-SHA256(meta key, "dvault/v1/keyring-pin" || vault id)[0:16]``:
a MAC, so the file says nothing about the key. Every enrolled user holds the meta key,
though, so a line also names the vault's signers (the lead's and the recovery actor's
Ed25519 keys, hashed): the key statement they sign (docs/format.md 9b) is then checked
with keys the database cannot swap. The file is text, one ``vault-id fingerprint
signers`` line (hex) per vault, after ``#`` comment lines; lines written before the
signers field have two fields and gain the third at the next open (docs/format.md 8c).
"""

from __future__ import annotations

import os
from pathlib import Path

from . import _crypto as C
from . import _format as F
from ._files import replace_private, write_private
from .errors import IntegrityError, VaultError

HEADER = "# defenders-vault known vaults: vault id, a fingerprint of its keys, its signers (no secret)\n"


def fingerprint(vault_id: bytes, meta_key: bytes) -> str:
    return C.hmac_sha256(meta_key, F.LABEL_KEYRING_PIN + vault_id)[:16].hex()


def signers_hash(lead_vk: bytes, recovery_vk: bytes) -> str:
    """Who may sign the vault's schema, plan and key statement (no lead: ``lead_vk`` empty)."""
    return C.sha256(F.LABEL_PIN_SIGNERS + bytes([len(lead_vk)]) + lead_vk
                    + bytes([len(recovery_vk)]) + recovery_vk)[:16].hex()


def _read(path: Path) -> dict[str, list[str]]:
    try:
        text = path.read_text("ascii")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError):
        raise VaultError(f"cannot read the known-vaults file {path}") from None
    pins: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        if not _well_formed(parts):
            raise VaultError(f"the known-vaults file {path} is malformed; restore or remove it")
        pins[parts[0]] = parts[1:]
    return pins


def _well_formed(parts: list[str]) -> bool:
    return len(parts) in (2, 3) and all(_is_hex(x, n) for x, n in zip(parts, (2 * F.ID_LEN, 32, 32)))


def check(path: str | os.PathLike[str], vault_id: bytes, meta_key: bytes, signers: str, *,
          record: bool = True) -> None:
    """Refuse the vault if its keys or signers differ from those recorded; record it on
    first sight (and a two-field line's missing signers) unless ``record`` is false
    (vault.open records only once every other check passed)."""
    _record(Path(path), vault_id.hex(), [fingerprint(vault_id, meta_key), signers], write=record)


def add(path: str | os.PathLike[str], line: str) -> None:
    """Record a vault before its first open, from the pin line its lead sent
    (``Vault.pin_line``: vault id, fingerprint, signers): that first open is then checked
    too, not trusted. Why: a substituted slot works on a client that has never seen the
    vault; a line that came by another channel than the database leaves it nothing to
    match."""
    parts = line.split() if isinstance(line, str) else []
    if not _well_formed(parts):
        raise VaultError("a pin is the vault id, its fingerprint and its signers: 32, 32 and 32 hex digits")
    parts = [x.lower() for x in parts]
    _record(Path(path), parts[0], parts[1:])


def _is_hex(text: str, length: int) -> bool:
    return len(text) == length and all(c in "0123456789abcdefABCDEF" for c in text)


def _record(p: Path, vid: str, mine: list[str], *, write: bool = True) -> None:
    pins = _read(p)
    known = pins.get(vid)
    if known is not None:
        if any(not C.mac_equal(a.encode(), b.encode()) for a, b in zip(known, mine)):
            raise IntegrityError("this vault's keys differ from those you opened it with before: "
                                 "your key slot may have been replaced; do not add records, tell the lead")
        if len(known) >= len(mine) or not write:
            return
    elif not write:
        return
    pins[vid] = mine
    data = (HEADER + "".join(f"{v} {' '.join(fp)}\n" for v, fp in sorted(pins.items()))).encode("ascii")
    if p.exists():
        replace_private(p, data)
    else:
        try:
            p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as e:
            raise VaultError(f"cannot create the folder of the known-vaults file {p}: {e.strerror}") from None
        write_private(p, data)
