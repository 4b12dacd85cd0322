"""`dvault pin`: check a vault's keys on the first open too, not only on later ones."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from .common import (
    default_identity_path,
    identity_path,
    note,
    pins_path,
    shown_url,
    unlock,
    vault_options,
    vault_url,
    warn,
)


@click.group()
def pin() -> None:
    """Known vaults: pin a vault's keys before your first open (threat model, section 9).

    Example: dvault pin add 3f2a...e1 9c0d...77 51be...0a --vault dd2026.vault --identity ~/sam.dvid
    """


@pin.command("show")
@vault_options
def pin_show(**kw: Any) -> None:
    """Print this vault's pin line (vault id, key fingerprint, signers; no secret) for a new user,
    and (on stderr) where you opened it.

    Example: dvault pin show --identity ~/lead.dvid
    """
    url = vault_url(kw.get("vault_url"))
    with unlock(kw) as v:
        click.echo(v.pin_line)
    note(f"location: {shown_url(os.path.abspath(url) if '://' not in url else url)}  (each user pins the line "
         f"for the place they open the vault at: dvault pin add LINE --vault URL)")


@pin.command("add")
@click.argument("vault_id")
@click.argument("fingerprint")
@click.argument("signers")
@click.option("--vault", "url", metavar="URL",
              help="Where you will open this vault: its path or database URL (or DVAULT_URL, or the config "
                   "file). Another vault found there is refused.")
@click.option("--identity", type=click.Path(dir_okay=False, path_type=Path),
              help="Your identity file (or DVAULT_IDENTITY, or the config file, or the default place).")
def pin_add(vault_id: str, fingerprint: str, signers: str, url: str | None, identity: Path | None) -> None:
    """Record the pin line the lead sent you (by any channel but the database), for the place
    you will open the vault at, before your first open: a key slot replaced in the database,
    or another vault built at that place, is then refused even on that open.

    Example: dvault pin add 3f2a...e1 9c0d...77 51be...0a --vault dd2026.vault --identity ~/sam.dvid
    """
    from vault import pins

    target = vault_url(url)
    path = pins_path(identity_path(identity) or default_identity_path())
    replaced = pins.add(path, f"{vault_id} {fingerprint} {signers}", target)
    click.echo(f"vault {vault_id.lower()} pinned in {path}")
    note(f"pinned for {shown_url(target)}: another vault found there is refused")
    if replaced is not None:
        warn(f"dvault: warning: this replaces vault {replaced}, recorded before at {shown_url(target)}: "
             "only right if the lead told you the vault there was replaced")


COMMANDS = [pin]
