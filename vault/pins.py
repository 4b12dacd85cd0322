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

Why also where: the pin is found by the vault id the database itself presents. Someone
who can write the database could build a fresh vault there (a new id, keys of their own,
the victim's public key enrolled): with no line for that id, its open was a silent first
sight. So the file also records, per location (the vault URL without its password,
hashed), which vault was opened there, and a different vault at a known location is
refused like different keys. A pin recorded before the first open (``add``, from the
lead's pin line) records the location it is for as well: the first open there meets a
location line, so a vault rebuilt in its place before that open (a new id, the
victim's public key enrolled) is refused with both ids named, not trusted as a first
sight of an unknown vault. And while such a pin has not been opened yet (a ``new`` line),
a vault the file does not know is refused wherever it is met, not trusted on first sight:
the user expects the pinned vault, and a lookalike reached by another spelling of its
location would otherwise be only a warned first sight.

Locations are compared by one canonical spelling (``location_text``): the real path of a
SQLite file, and for PostgreSQL the server, port, database and what selects the schema,
whatever login, driver, TLS options or loopback spelling reach it.

The file and its folders must be the user's own and writable by no one else
(``check_private``): a pin another local account can rewrite protects nothing.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from . import _crypto as C
from . import _format as F
from ._files import check_private, make_private_dirs, replace_private, write_private
from .errors import IntegrityError, VaultError

HEADER = ("# defenders-vault known vaults: vault id, a fingerprint of its keys, its signers; "
          "'at', a hashed location, the vault id there; 'new', a vault pinned but not opened yet (no secret)\n")
#: Query parameters of a PostgreSQL URL that select the place (database, schema), not how to
#: get there (TLS, timeouts, the application name).
_PLACE_KEYS = ("dbname", "host", "hostaddr", "options", "port", "service")
_LOOPBACK = ("", "localhost", "127.0.0.1", "::1", "[::1]")


def fingerprint(vault_id: bytes, meta_key: bytes) -> str:
    return C.hmac_sha256(meta_key, F.LABEL_KEYRING_PIN + vault_id)[:16].hex()


def signers_hash(lead_vk: bytes, recovery_vk: bytes) -> str:
    """Who may sign the vault's schema, plan and key statement (no lead: ``lead_vk`` empty)."""
    return C.sha256(F.LABEL_PIN_SIGNERS + bytes([len(lead_vk)]) + lead_vk
                    + bytes([len(recovery_vk)]) + recovery_vk)[:16].hex()


def location_text(url: str) -> str:
    """Where a vault lives, spelled one way (docs/format.md 8c): ``sqlite:`` and the real
    path (symbolic links and ``..`` resolved), or ``BACKEND://USER@HOST:PORT/DATABASE?K=V&...``
    with the driver cut to the backend's name; no password; the host in lower case, any
    loopback or Unix-socket spelling as ``localhost``; the port 5432 when absent (libpq's);
    the user only when the URL's options do not set ``search_path`` (the default path starts
    with the user's own schema, so the user selects the place then, and only then); of the
    query only what selects the place (``_PLACE_KEYS``), sorted, ``-c name=value`` written
    ``-cname=value``; nothing percent-encoded. Our own spelling, not a library's rendering,
    so that an upgrade of SQLAlchemy (or a second implementation) names the same place the
    same way. A bare path means SQLite, as for vault.open."""
    if isinstance(url, str) and url and "://" not in url:
        return "sqlite:" + os.path.realpath(url)
    try:
        u = make_url(url)
        backend = u.get_backend_name()
    except (ArgumentError, ValueError):
        raise VaultError("not a database URL") from None
    if backend == "sqlite":
        return "sqlite:" + os.path.realpath(u.database or "")
    values = {k: [re.sub(r"-c\s+", "-c", " ".join(str(v).split())) for v in
                  (u.query[k] if isinstance(u.query[k], tuple) else (u.query[k],))]
              for k in u.query if k in _PLACE_KEYS}
    query = "&".join(f"{k}={v}" for k in sorted(values) for v in values[k])
    schema_set = any("search_path=" in v for v in values.get("options", []))
    host = (u.host or "").lower()
    host = "localhost" if host in _LOOPBACK or host.startswith("/") else host
    return (f"{backend}://{'' if schema_set else u.username or ''}@{host}:{5432 if u.port is None else u.port}"
            f"/{u.database or ''}?{query}")


def location_hash(url: str) -> str:
    """The known-vaults file's name for where a vault lives: location_text, hashed (the file
    says nothing of where the vault is, and a path holds no spaces to escape)."""
    return C.sha256(F.LABEL_PIN_LOCATION + location_text(url).encode("utf-8"))[:16].hex()


def _read(path: Path) -> tuple[dict[str, list[str]], dict[str, str], set[str]]:
    """(vault id -> [fingerprint, signers?], location hash -> vault id, vault ids pinned but
    not opened yet)."""
    check_private(path, "known-vaults file")
    try:
        text = path.read_text("ascii")
    except FileNotFoundError:
        return {}, {}, set()
    except (OSError, UnicodeDecodeError):
        raise VaultError(f"cannot read the known-vaults file {path}") from None
    pins: dict[str, list[str]] = {}
    places: dict[str, str] = {}
    fresh: set[str] = set()
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        if parts[0] == "new":
            if len(parts) != 2 or not _is_hex(parts[1], 2 * F.ID_LEN) or parts[1] in fresh:
                raise VaultError(f"the known-vaults file {path} is malformed; restore or remove it")
            fresh.add(parts[1])
            continue
        if parts[0] == "at":
            if len(parts) != 3 or not _is_hex(parts[1], 32) or not _is_hex(parts[2], 2 * F.ID_LEN):
                raise VaultError(f"the known-vaults file {path} is malformed; restore or remove it")
            if parts[1] in places:
                raise VaultError(f"the known-vaults file {path} names one location twice; restore or remove it")
            places[parts[1]] = parts[2]
            continue
        if not _well_formed(parts):  # lower-case hex only: a line that could never match is no pin
            raise VaultError(f"the known-vaults file {path} is malformed; restore or remove it")
        if parts[0] in pins:  # which one counts? neither: the file was edited
            raise VaultError(f"the known-vaults file {path} names vault {parts[0]} twice; restore or remove it")
        pins[parts[0]] = parts[1:]
    return pins, places, fresh & set(pins)


def _well_formed(parts: list[str]) -> bool:
    return len(parts) in (2, 3) and all(_is_hex(x, n) for x, n in zip(parts, (2 * F.ID_LEN, 32, 32), strict=False))


def known(path: str | os.PathLike[str]) -> set[str]:
    """Vault ids (hex) the file has a line for (the CLI says when an open adds one)."""
    return set(_read(Path(path))[0])


def unopened(path: str | os.PathLike[str]) -> set[str]:
    """Vault ids (hex) pinned with ``add`` and not opened since."""
    return _read(Path(path))[2]


def check(path: str | os.PathLike[str], vault_id: bytes, meta_key: bytes, signers: str, *,
          record: bool = True, location: str = "", created: bool = False) -> bool:
    """Refuse the vault if its keys or signers differ from those recorded, or if the file
    names another vault for ``location`` (a vault URL: one pinned there with ``add``, or
    opened there before); record it on first sight (and a two-field line's missing
    signers, and a new location) unless ``record`` is false (vault.open records only once
    every other check passed). ``created``: the caller has just made this vault at
    ``location``, which it then takes over from any vault recorded there before. True if
    a vault line was added."""
    return _record(Path(path), vault_id.hex(), [fingerprint(vault_id, meta_key), signers],
                   location_hash(location) if location else "", write=record, claim=created)[0]


def add(path: str | os.PathLike[str], line: str, location: str) -> str | None:
    """Record a vault before its first open, from the pin line its lead sent
    (``Vault.pin_line``: vault id, fingerprint, signers), for ``location``, the vault URL
    this client will open it at: that first open is then checked too, not trusted. Why: a
    substituted slot works on a client that has never seen the vault; a line that came by
    another channel than the database leaves it nothing to match. All three fields:
    without the signers the first open would take them from the database. The location:
    without it, a vault rebuilt at that place before the first open presents an id the
    file has never seen, and looks like any first sight. The location is the caller's
    decision: it replaces whatever vault was recorded there (the lead moved the vault);
    returns that vault's id (hex), if any. Until its first open, the pin is marked as not
    opened yet, and every vault the file does not know is refused (:func:`_record`)."""
    parts = line.lower().split() if isinstance(line, str) else []
    if len(parts) != 3 or not _well_formed(parts):
        raise VaultError("a pin is the vault id, its fingerprint and its signers: 32, 32 and 32 hex digits")
    if not isinstance(location, str) or not location.strip():
        raise VaultError("a pin needs the location of the vault (its URL or path, as you will open it)")
    return _record(Path(path), parts[0], parts[1:], location_hash(location), claim=True, pinning=True)[1]


def _is_hex(text: str, length: int) -> bool:
    return len(text) == length and all(c in "0123456789abcdef" for c in text)


def _record(p: Path, vid: str, mine: list[str], place: str, *, write: bool = True,
            claim: bool = False, pinning: bool = False) -> tuple[bool, str | None]:
    """Check, then record, a vault line and a location line. ``claim``: the caller has the
    right to say which vault is at ``place`` (it made the vault there, or the user pinned
    it there), so another vault recorded there is replaced, not refused; ``pinning``: a pin
    recorded before the first open (``add``), marked as such until that open. A vault the
    file does not know is refused while any pin is not opened yet (unless the caller made
    it). Returns (a vault line was added, the vault id the location line named before if it
    was replaced)."""
    pins, places, fresh = _read(p)
    there = places.get(place) if place else None
    if there is not None and there != vid and not claim:
        raise IntegrityError(f"a different vault is at this location than the one pinned or opened there before "
                             f"(expected vault {there}, found vault {vid}): the database may have been replaced; "
                             f"do not add records, tell the lead (if the lead did replace it, pin the new vault's "
                             f"line for this location: dvault pin add)")
    if vid not in pins and fresh and not claim:
        raise IntegrityError(f"vault {vid} is not one you know, and the vault you pinned (" + ", ".join(sorted(fresh))
                             + ") has not been opened yet: this may be a lookalike; do not add records, tell the "
                             "lead (to open a new vault anyway, pin its line first: dvault pin add)")
    known = pins.get(vid)
    if known is not None:
        if any(not C.mac_equal(a.encode(), b.encode()) for a, b in zip(known, mine, strict=False)):
            raise IntegrityError("this vault's keys differ from those you opened it with before: "
                                 "your key slot may have been replaced; do not add records, tell the lead")
    new_pin = known is None or len(known) < len(mine)
    new_place = bool(place) and there != vid
    opened = vid in fresh and not pinning
    if not write or not (new_pin or new_place or opened or (pinning and known is None)):
        return False, None
    if new_pin:
        pins[vid] = mine
    if new_place:
        places[place] = vid
    if opened:
        fresh.discard(vid)
    elif pinning and known is None:
        fresh.add(vid)
    data = (HEADER + "".join(f"{v} {' '.join(fp)}\n" for v, fp in sorted(pins.items()))
            + "".join(f"at {h} {v}\n" for h, v in sorted(places.items()))
            + "".join(f"new {v}\n" for v in sorted(fresh))).encode("ascii")
    if p.exists():
        replace_private(p, data)
    else:
        make_private_dirs(p.parent, f"the known-vaults file {p}")
        check_private(p, "known-vaults file")
        write_private(p, data)
    return known is None, there if new_place else None
