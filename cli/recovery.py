"""`dvault recovery split|show` and `dvault recover`: the vault's way back split among
k of n trustees as SLIP-39 shares (vault/shares.py, docs/threat-model.md 6.7).

Shares are typed at a no-echo prompt, one by one, each checked as it is entered (a
word not in the list, a failed checksum with the word located, a share of another vault
or of an older split); never argv. For scripts and tests, --shares-file (one share a
line, refused if another account can write it) or DVAULT_RECOVERY_SHARES (one share a
line; removed from the environment when read), as for passphrases."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

import vault

from .common import check_vault_there, confirm, need_stdout, note, set_reason, unlock, vault_options, write_stdout
from .common import vault_url as resolve_vault_url
from .move import new_vault_options
from .secrets_input import _take_env, read_passphrase

SHARES_ENV = "DVAULT_RECOVERY_SHARES"
SLIP39_ENV = ("DVAULT_SLIP39_PASSPHRASE",)

_SLIP39_FILE = click.option(
    "--slip39-passphrase-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The shares' SLIP-39 passphrase from this file (else DVAULT_SLIP39_PASSPHRASE, else a prompt).")


def slip39_passphrase(file: Path | None, ask: bool, *, confirm_it: bool) -> str:
    """The SLIP-39 passphrase for a split or a recovery: a file, the variable, or (``ask``)
    a prompt; "" for none."""
    if file is None and not any(os.environ.get(n) for n in SLIP39_ENV) and not ask:
        return ""
    return read_passphrase(file, "SLIP-39 passphrase of the shares", confirm=confirm_it, env=SLIP39_ENV)


def print_shares(shares: list[str], k: int) -> None:
    """The shares on stdout, one a line (what a script keeps), flushed; the advice on stderr."""
    note(f"{len(shares)} recovery shares follow, one a line; any {k} of them open every key of this vault. They are "
         "shown this once and stored nowhere: write each on paper for one trustee (number, and all "
         f"{len(shares[0].split())} words in order), then clear this screen.")
    write_stdout(shares, "the recovery shares", "; nothing was changed (earlier shares, if any, still open the vault)")


def split_now(v: vault.Vault, k: int, n: int, passphrase: str) -> None:
    """Split, the shares written and flushed inside the split's transaction: a stdout that
    is closed, full or a broken pipe rolls the split back, so the earlier shares are not
    killed for new ones no one received."""
    need_stdout("the recovery shares")
    v.split_recovery(k, n, slip39_passphrase=passphrase, deliver=lambda shares: print_shares(shares, k))


@click.group()
def recovery() -> None:
    """Recovery shares: the vault's way back split among trustees (k of n SLIP-39 shares).

    Example: dvault recovery split --shares 3-of-5
    """


@recovery.command("split")
@click.option("--shares", "k_of_n", required=True, metavar="K-of-N", help="How many shares open (K) of how many "
              "are made (N), e.g. 3-of-5.")
@click.option("--slip39-passphrase", "ask", is_flag=True, help="Protect the shares with a SLIP-39 passphrase too "
              "(asked twice); recovery then needs it as well.")
@_SLIP39_FILE
@click.option("--yes", is_flag=True, help="Replace the current shares without asking (scripts).")
@vault_options
def split(k_of_n: str, ask: bool, slip39_passphrase_file: Path | None, yes: bool, **kw: Any) -> None:
    """Make n recovery shares, any k of which open every key of the vault (as the recovery
    passphrase does); the lead or the recovery passphrase. Again, it replaces them: every
    earlier share opens nothing afterwards. The recovery passphrase stays as it is.

    Example: dvault recovery split --shares 3-of-5 --vault dd2026.vault
    """
    from vault.shares import parse_k_of_n
    k, n = parse_k_of_n(k_of_n)
    need_stdout("the recovery shares")  # before the passphrase is asked or the unlock audited
    with unlock(kw, advice=False) as v:
        current = v.recovery_shares()
        if current is not None and not yes:
            confirm(f"Replace the current {current['k']}-of-{current['n']} shares (made {current['made']})? "
                    "They will open nothing afterwards")
        passphrase = slip39_passphrase(slip39_passphrase_file, ask, confirm_it=True)
        split_now(v, k, n, passphrase)
    if current is not None:
        note(f"the earlier {current['k']}-of-{current['n']} shares (made {current['made']}) open nothing now")


@recovery.command("show")
@vault_options
def show(**kw: Any) -> None:
    """When the recovery shares were made, and how many of how many open the vault.

    Example: dvault recovery show --vault dd2026.vault
    """
    with unlock(kw, advice=False) as v:
        info = v.recovery_shares()
    if info is None:
        click.echo("no recovery shares (dvault recovery split --shares K-of-N makes them)")
        return
    click.echo(f"recovery shares   {info['k']}-of-{info['n']}, made {info['made']}"
               + (", with a SLIP-39 passphrase" if info["slip39_passphrase"] else ""))
    for p in info.get("problems", []):
        click.echo(f"dvault: warning: {p}", err=True)


def read_shares(url: str, file: Path | None) -> list[str]:
    """k shares: from the file, else the variable, else typed one by one (each checked as
    it is entered, and asked again if it is wrong)."""
    from vault.shares import check_share, stored_info
    info = stored_info(url)
    if file is not None or os.environ.get(SHARES_ENV):
        if file is not None:
            from vault._files import check_private
            check_private(file, "shares file")
            try:
                text = file.read_text("utf-8")
            except (OSError, UnicodeDecodeError):
                raise click.UsageError("cannot read the shares file (UTF-8 text, one share a line)") from None
        else:
            text = _take_env(SHARES_ENV)
        lines = [line.split(":")[-1].strip() for line in text.splitlines()
                 if line.strip() and not line.lstrip().startswith("#")]
        return lines
    tty = sys.stdin is not None and sys.stdin.isatty()
    note(f"this vault's recovery needs {info.k} of its {info.n} shares: type each one's words, in order")
    got: list[str] = []
    checked: list[Any] = []
    while len(got) < info.k:
        i = len(got) + 1
        text = _prompt(f"Share {i} of {info.k}", tty)
        try:
            checked.append(check_share(text, i, info, checked))
        except vault.BadShare as e:
            if not tty:
                raise
            click.echo(f"dvault: {e}; type share {i} again", err=True)
            continue
        got.append(text)
    return got


def _prompt(prompt: str, tty: bool) -> str:
    if tty:
        return str(click.prompt(prompt, hide_input=True, err=True))
    line = sys.stdin.readline() if sys.stdin is not None else ""
    if not line:
        raise click.UsageError(f"no input for: {prompt} (use --shares-file or {SHARES_ENV})")
    return line.strip()


@click.command()
@click.option("--vault", "vault_url", metavar="URL", help="The vault to recover: SQLite path or URL (or DVAULT_URL).")
@click.option("--shares-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help=f"The shares from this file, one a line (else {SHARES_ENV}, else typed one by one).")
@_SLIP39_FILE
@new_vault_options
def recover(vault_url: str | None, to_url: str, identity: Path, name: str, shares_file: Path | None,
            slip39_passphrase_file: Path | None, new_passphrase_file: Path | None,
            identity_passphrase_file: Path | None, reason: str | None) -> None:
    """Open the vault with k of its recovery shares and move every participant into a
    new vault under a new lead (as dvault move does with the recovery passphrase): for
    when the lead is gone and no one person holds the way back. Each share is checked as
    it is typed (a wrong word is named by its number). The old vault is left as it is.

    Example: dvault recover --vault dd2026.vault --to dd2026-new.vault --identity ~/omar.dvid
    """
    from vault.shares import stored_info

    from .move import move_into
    url = resolve_vault_url(vault_url)
    check_vault_there(url)
    shares = read_shares(url, shares_file)
    secret = slip39_passphrase(slip39_passphrase_file, stored_info(url).passphrase, confirm_it=False)
    with vault.open_with_shares(url, shares, secret) as src:
        note(f"the shares open vault {src.id}")
        set_reason(src, reason)
        move_into(src, url, to_url, identity, name, new_passphrase_file, identity_passphrase_file, None)


COMMANDS = [recovery, recover]
