"""`dvault move`: the way back after the lead's identity is lost or seized (threat model 6.6)."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

import vault

from .admin import RECOVERY_ADVICE, lead_identity
from .common import check_vault_there, note, pins_path, printable, set_reason, shown_url, with_progress
from .common import vault_url as resolve_vault_url
from .secrets_input import NEW_ENV, RECOVERY_ENV, read_new_passphrase, read_passphrase
from .travel import remember_made


def new_vault_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The options of a command that makes a new vault under a new lead (move, recover)."""
    for option in reversed([
        click.option("--to", "to_url", required=True, metavar="URL", help="Where to create the new vault."),
        click.option("--identity", type=click.Path(dir_okay=False, path_type=Path), required=True,
                     help="The new lead's identity file; created if it does not exist. Not the old lead's."),
        click.option("--name", default="lead", show_default=True, help="The new lead's name or handle."),
        click.option("--new-passphrase-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="The new vault's recovery passphrase from this file (else DVAULT_NEW_PASSPHRASE, "
                          "else a prompt, asked twice)."),
        click.option("--identity-passphrase-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="The new identity's passphrase from this file (else DVAULT_IDENTITY_PASSPHRASE, "
                          "else a prompt)."),
        click.option("--reason", help="Why (recorded in both logs, sealed to each vault's lead)."),
    ]):
        f = option(f)
    return f


@click.command()
@click.option("--vault", "vault_url", metavar="URL", help="The old vault: SQLite path or URL (or DVAULT_URL).")
@click.option("--passphrase-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The old vault's recovery passphrase from this file (else DVAULT_RECOVERY_PASSPHRASE "
                   "or DVAULT_PASSPHRASE, else a prompt).")
@new_vault_options
def move(vault_url: str | None, to_url: str, identity: Path, name: str, passphrase_file: Path | None,
         new_passphrase_file: Path | None, identity_passphrase_file: Path | None, reason: str | None) -> None:
    """Copy every participant into a new vault with new keys, a new lead and a new
    recovery passphrase, opening the old one with its recovery passphrase. For when the
    lead's identity is lost or may be in other hands: the old keys open nothing in the
    new vault. Users are not carried over (the old user table was signed by that lead):
    re-enrol each one after checking their fingerprint. Pseudonyms change. The old vault
    is left as it is, with its audit log.

    Example: dvault move --vault dd2026.vault --to dd2026-new.vault --identity ~/nadia.dvid
    """
    url = resolve_vault_url(vault_url)
    check_vault_there(url)
    old = read_passphrase(passphrase_file, "Recovery passphrase of the old vault", env=RECOVERY_ENV)
    with vault.open(url, old) as src:  # a wrong passphrase fails before anything else is asked
        set_reason(src, reason)
        move_into(src, url, to_url, identity, name, new_passphrase_file, identity_passphrase_file, old)


def move_into(src: vault.Vault, url: str, to_url: str, identity: Path, name: str, new_passphrase_file: Path | None,
              identity_passphrase_file: Path | None, old: str | None) -> None:
    """The move itself, from ``src`` opened with every key (the recovery passphrase
    ``old``, or the recovery shares: ``old`` None), and what every user must be told."""
    lead, id_pw, new_identity = lead_identity(identity, identity_passphrase_file,
                                              "Passphrase for the new lead's identity")
    new = read_new_passphrase(new_passphrase_file, "Recovery passphrase for the new vault", env=NEW_ENV)
    if new == old:
        raise click.UsageError("the new vault needs a new recovery passphrase, not the old one")
    manage = {r.name for r in src.schema.roles.values() if r.manage}
    users = [u for u in src.users() if u.role not in manage]
    if new_identity:
        lead.save(identity, id_pw)
    try:
        moved = with_progress("moving", src.count(), lambda step: vault.move(
            src, to_url, new, lead=lead, lead_name=name, progress=step))
    except BaseException:  # no vault: an identity made for it would only be a stray key file
        if new_identity:
            identity.unlink(missing_ok=True)
        raise
    src_id = src.id
    remember_made(to_url, identity if new_identity else None)
    with moved.vault as dest:
        click.echo(f"moved {moved.records} participants into vault {dest.id} at {shown_url(to_url)}")
        if dest.pin(pins_path(identity), created=True):
            note(f"its keys are pinned in {pins_path(identity)}")
    # What each user records before their first open of the new vault (stdout: a script keeps it).
    click.echo(f"pin line: {moved.pin_line}")
    click.echo(f"location: {moved.location}")
    note("Send every user the pin line by any channel but the database. Before their first open of the new "
         f"vault each runs: dvault pin add {moved.pin_line} --vault URL (the new vault's path or URL as they "
         "open it); a vault found there with another id is then refused, not trusted.")
    if new_identity:
        note(f"created identity {identity}")
    note(f"the new lead's identity: {identity}  fingerprint {lead.public.fingerprint()}")
    note(f"The old vault {src_id} at {shown_url(url)} is unchanged. Keep it, as safe as before, until its "
         "audit log has been read (dvault audit show / verify on it); then destroy it and every backup "
         "of it. Pseudonyms changed: reissue badges and other exports from the new vault.")
    if users:
        note("Users are not carried over. Re-enrol each one only after checking their fingerprint with "
             "them by voice (the old user table was signed by the lost lead key):")
        for u in users:
            note(f"  dvault user add {u.public.to_line()} --name {shlex.quote(printable(u.name))} --role {u.role}"
                 f"   # fingerprint {u.public.fingerprint()}")
    note(RECOVERY_ADVICE)


COMMANDS = [move]
