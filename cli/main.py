"""Entry point for ``dvault``. Exit codes: 0 ok, 1 usage, 2 not found, 3 access denied,
4 wrong passphrase, 5 integrity failure."""

from __future__ import annotations

import sys

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
