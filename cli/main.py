"""Entry point for ``dvault``. Exit codes: 0 ok, 1 usage, 2 not found, 3 access denied,
4 wrong passphrase, 5 integrity failure."""

from __future__ import annotations

import sys
from pathlib import Path

import click

import vault

EXIT = {vault.NotFound: 2, vault.AccessDenied: 3, vault.WrongPassphrase: 4, vault.IntegrityError: 5}


def _exit_code(err: vault.VaultError) -> int:
    for cls, code in EXIT.items():
        if isinstance(err, cls):
            return code
    return 1


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(vault.__version__, prog_name="dvault")
def cli() -> None:
    """defenders-vault: an encrypted, audited store for participant records."""


@cli.command()
@click.option("--participants", "-n", default=150, show_default=True, help="How many synthetic people.")
def demo(participants: int) -> None:
    """Run an end-to-end demo on a throwaway SQLite vault in a temp dir.

    Example: dvault demo -n 150
    """
    from .demo import run_demo

    if not 1 <= participants <= 100_000:
        raise click.UsageError("--participants must be between 1 and 100000")
    run_demo(participants)


@cli.command()
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Identity file to create (default: the per-user data directory).")
@click.option("--passphrase-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Read the new passphrase from this file instead of prompting.")
def keygen(out: Path | None, passphrase_file: Path | None) -> None:
    """Create your identity: keys to receive vault access, encrypted under a passphrase.

    Prints the public line to send to the security lead and the fingerprint to read
    to them by voice. The file is created 0600 and never overwritten.

    Example: dvault keygen -o ~/.local/share/defenders-vault/identity.dvid
    """
    from vault.identity import Identity, default_path

    from .secrets_input import read_passphrase

    path = out or default_path()
    if path.exists():
        raise click.UsageError(f"{path} already exists; refusing to overwrite an identity")
    pw = read_passphrase(passphrase_file, "Passphrase for the new identity", confirm=True)
    ident = Identity.generate()
    ident.save(path, pw)
    click.echo(f"identity: {path}")
    click.echo(f"public:   {ident.public.to_line()}")
    click.echo(f"fingerprint (read it to the lead): {ident.public.fingerprint()}")


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("dvault: error: aborted", err=True)
        sys.exit(1)
    except click.ClickException as e:
        click.echo(f"dvault: error: {e.format_message()}", err=True)
        sys.exit(1)  # usage errors are 1 here (click uses 2, which we reserve for not found)
    except vault.VaultError as e:
        click.echo(f"dvault: error: {e}", err=True)
        sys.exit(_exit_code(e))
    except KeyboardInterrupt:
        click.echo("dvault: error: interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
