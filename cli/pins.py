"""`dvault pin`: check a vault's keys on the first open too, not only on later ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from vault import pins
from vault.identity import default_path

from .common import identity_path, pins_path, unlock, vault_options


@click.group()
def pin() -> None:
    """Known vaults: pin a vault's keys before your first open (threat model, section 9).

    Example: dvault pin add 3f2a...e1 9c0d...77 51be...0a --identity ~/sam.dvid
    """


@pin.command("show")
@vault_options
def pin_show(**kw: Any) -> None:
    """Print this vault's pin line (vault id, key fingerprint, signers; no secret) for a new user.

    Example: dvault pin show --identity ~/lead.dvid
    """
    with unlock(kw) as v:
        click.echo(v.pin_line)


@pin.command("add")
@click.argument("vault_id")
@click.argument("fingerprint")
@click.argument("signers")
@click.option("--identity", type=click.Path(dir_okay=False, path_type=Path),
              help="Your identity file (or DVAULT_IDENTITY, or the config file, or the default place).")
def pin_add(vault_id: str, fingerprint: str, signers: str, identity: Path | None) -> None:
    """Record the pin line the lead sent you (by any channel but the database), before your
    first open: a key slot replaced in the database is then refused even on that open.

    Example: dvault pin add 3f2a...e1 9c0d...77 51be...0a --identity ~/sam.dvid
    """
    path = pins_path(identity_path(identity) or default_path())
    pins.add(path, f"{vault_id} {fingerprint} {signers}")
    click.echo(f"vault {vault_id.lower()} pinned in {path}")


COMMANDS = [pin]
