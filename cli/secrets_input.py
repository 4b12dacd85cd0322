"""Where passphrases come from: a no-echo prompt, --passphrase-file, or DVAULT_PASSPHRASE.
Never argv (it shows in `ps` and shell history)."""

from __future__ import annotations

import os
from pathlib import Path

import click


def read_passphrase(file: Path | None, prompt: str, *, confirm: bool = False,
                    env: str = "DVAULT_PASSPHRASE") -> str:
    if file is not None:
        try:
            text = file.read_text("utf-8")
        except OSError as e:
            raise click.UsageError(f"cannot read passphrase file: {e.strerror}") from None
        except UnicodeDecodeError:  # its message would quote the passphrase's bytes
            raise click.UsageError("passphrase file is not UTF-8 text") from None
        value = text.rstrip("\r\n")
    elif os.environ.get(env):
        value = os.environ[env]
    else:
        value = click.prompt(prompt, hide_input=True, confirmation_prompt=confirm, err=True)
    if not value:
        raise click.UsageError("the passphrase is empty")
    return value
