"""`dvault backup` and `dvault restore` (vault.backup, vault.restore; docs/guide.md "Lifecycle")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

import vault

from .common import (
    checkpoints_path,
    confirm,
    identity_path,
    note,
    shown_url,
    unlock,
    vault_options,
    warn,
    with_progress,
)
from .common import vault_url as resolve_vault_url
from .secrets_input import IDENTITY_ENV, RECOVERY_ENV, read_passphrase


@click.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--ledger", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the shred ledger to this file (keep it wherever the backups are).")
@vault_options
def backup(file: Path, ledger: Path | None, **kw: Any) -> None:
    """Write one file holding the whole vault (records, index, pseudonyms, key slots,
    schema, users, key statement, audit log, shred ledger), signed by you, with a
    checksum. Every field is ciphertext in it: it opens only with a key slot's passphrase
    or identity. Lead only; audited; never overwrites a file.

    Example: dvault backup dd2026-monday.dvbak --ledger dd2026.dvledger
    """
    for path in (file, ledger):
        if path is not None:
            _check_new(path)
    with unlock(kw, advice=False) as v:
        # the bar's length is the record count until the backup counts its rows (read, then written)
        out = with_progress("backing up", max(1, v.count()), lambda step: v.backup(file, ledger=ledger,
                                                                                  progress=step))
    click.echo(f"backed up {out['records']} records and {out['audit_entries']} audit entries to {file} "
               f"({out['bytes']} bytes)")
    if ledger is not None:
        note(f"shred ledger ({out['ledger']} entries) written to {ledger}")


def _check_new(path: Path) -> None:
    """A file the backup would refuse (there already) or fail to make (its folder missing),
    said before the passphrase and the whole read, as export's --out is (exit 1). A folder
    that cannot be written is left to the write, which tells a read-only disk (exit 6)."""
    if path.exists() or path.is_symlink():
        raise vault.VaultExists(f"refusing to overwrite {path}")
    if not path.absolute().parent.is_dir():
        raise click.UsageError(f"cannot write to {path}: no such folder")


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--vault", "vault_url", metavar="URL", help="Where to restore: SQLite path or URL (or DVAULT_URL).")
@click.option("--identity", type=click.Path(dir_okay=False, path_type=Path), help="The lead's identity file.")
@click.option("--recovery", is_flag=True, help="Use the recovery passphrase instead of an identity.")
@click.option("--passphrase-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Read the passphrase from this file (else the environment, else a prompt).")
@click.option("--ledger", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A shred ledger file written by dvault backup --ledger, re-applied too (when the live "
                   "vault, which holds the ledger, is lost or damaged).")
@click.option("--deep", is_flag=True, help="Also open every record row of the backup and compare it with its "
              "audit log (slower; finds rows already rolled back in the vault the backup was taken from).")
@click.option("--yes", is_flag=True, help="Replace the vault there without asking.")
def restore(file: Path, vault_url: str | None, identity: Path | None, recovery: bool,
            passphrase_file: Path | None, ledger: Path | None, deep: bool, yes: bool) -> None:
    """Replace the vault with a backup, after checking every byte of the file, the key
    statement, the users, the audit log and every record; every record shredded since
    the backup (the shred ledger) is shredded again. If any check fails, nothing is
    changed. Stop other clients first: what they write meanwhile is lost.

    Example: dvault restore dd2026-monday.dvbak --vault dd2026.vault --identity lead.dvid
    """
    url = resolve_vault_url(vault_url)
    if not yes:
        confirm(f"Replace the vault at {shown_url(url)} with the backup {file}?")
    ident_path = None if recovery else identity_path(identity)
    if ident_path is not None:
        from vault.identity import Identity
        if not ident_path.is_file():
            raise vault.NotFound(f"no identity file at {ident_path}")
        ident = Identity.load(ident_path, read_passphrase(passphrase_file, f"Passphrase for identity "
                                                          f"{ident_path.name}", env=IDENTITY_ENV))
        out = vault.restore(url, file, identity=ident, ledger=ledger, checkpoints=checkpoints_path(ident_path),
                            deep=deep)
    else:
        pw = read_passphrase(passphrase_file, "Vault recovery passphrase", env=RECOVERY_ENV)
        out = vault.restore(url, file, passphrase=pw, ledger=ledger, deep=deep)
    click.echo(f"restored {out.records} records and {out.audit_entries} audit entries (up to entry "
               f"{out.backup_seq}) at {shown_url(url)}")
    click.echo(f"checkpoint of the restored log (write it down): {out.checkpoint.split(':', 3)[0]}:"
               f"{out.checkpoint.split(':')[1]}:{out.checkpoint.split(':')[2]}")
    if out.replayed:
        note(f"shredded again {out.replayed} record(s) the shred ledger names (shredded after the backup)")
    for w in out.warnings:
        warn(f"dvault: warning: {w}")


COMMANDS = [backup, restore]
