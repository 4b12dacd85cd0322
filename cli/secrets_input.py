"""Where passphrases come from: --passphrase-file, an environment variable, or a no-echo
prompt. Never argv (it shows in `ps` and shell history).

The variables name the secret, so one script can hold both without confusion:
DVAULT_IDENTITY_PASSPHRASE for identity files, DVAULT_RECOVERY_PASSPHRASE for a vault's
recovery passphrase; DVAULT_PASSPHRASE is the fallback for either (what the command at
hand asks for). DVAULT_NEW_PASSPHRASE is the new one when a passphrase is changed."""

from __future__ import annotations

import os
from pathlib import Path

import click


IDENTITY_ENV = ("DVAULT_IDENTITY_PASSPHRASE", "DVAULT_PASSPHRASE")
RECOVERY_ENV = ("DVAULT_RECOVERY_PASSPHRASE", "DVAULT_PASSPHRASE")
NEW_ENV = ("DVAULT_NEW_PASSPHRASE",)  # `dvault passphrase`: the one being set


def read_passphrase(file: Path | None, prompt: str, *, confirm: bool = False,
                    env: tuple[str, ...]) -> str:
    """The passphrase from ``file``, else the first of the ``env`` variables that is set,
    else a prompt."""
    if file is not None:
        try:
            text = file.read_text("utf-8")
        except OSError as e:
            raise click.UsageError(f"cannot read passphrase file: {e.strerror}") from None
        except UnicodeDecodeError:  # its message would quote the passphrase's bytes
            raise click.UsageError("passphrase file is not UTF-8 text") from None
        value = text.rstrip("\r\n")
    else:
        value = next((os.environ[name] for name in env if os.environ.get(name)), "") or _ask(prompt, confirm)
    if not value:
        raise click.UsageError("the passphrase is empty")
    return value


def _ask(prompt: str, confirm: bool) -> str:
    """A no-echo prompt on a terminal. Without one (a pipe, cron) getpass would print two
    warnings naming the interpreter and read stdin anyway: read the line ourselves, with
    no prompt to a screen that is not there, and make end of input one clear error."""
    import sys
    if sys.stdin is not None and sys.stdin.isatty():
        return str(click.prompt(prompt, hide_input=True, confirmation_prompt=confirm, err=True))
    first = sys.stdin.readline() if sys.stdin is not None else ""
    if not first:
        raise click.UsageError(f"no input for: {prompt} (use --passphrase-file or the variables named in --help)")
    if confirm and sys.stdin.readline().rstrip("\r\n") != first.rstrip("\r\n"):
        raise click.UsageError("the two entries differ")
    return first.rstrip("\r\n")
