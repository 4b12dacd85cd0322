"""Where passphrases come from: --passphrase-file, an environment variable, or a no-echo
prompt. Never argv (it shows in `ps` and shell history).

The variables name the secret, so one script can hold both without confusion:
DVAULT_IDENTITY_PASSPHRASE for identity files, DVAULT_RECOVERY_PASSPHRASE for a vault's
recovery passphrase; DVAULT_PASSPHRASE is the fallback for either (what the command at
hand asks for). DVAULT_NEW_PASSPHRASE is the new one when a passphrase is changed.

A variable is removed from the environment as soon as its passphrase is read: from
``os.environ`` and the C library's environment (unsetenv), so no child process inherits
it, and, on Linux, its value is overwritten in place first, so ``/proc/<pid>/environ``
(which shows the environment block the process started with, whatever unsetenv did to
the C library's list) no longer holds it either. What stays: the variable's name and
the value's length there, every copy the shell that started dvault keeps, and whatever
read the environment before this point."""

from __future__ import annotations

import os
import sys
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
        from .passfile import check
        check(file)  # refused if others can write it, a warning if they can read it
        try:
            text = file.read_text("utf-8")
        except OSError as e:
            raise click.UsageError(f"cannot read passphrase file: {e.strerror}") from None
        except UnicodeDecodeError:  # its message would quote the passphrase's bytes
            raise click.UsageError("passphrase file is not UTF-8 text") from None
        value = text.rstrip("\r\n")
    else:
        name = next((name for name in env if os.environ.get(name)), None)
        value = _take_env(name) if name is not None else _ask(prompt, confirm)
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


def _take_env(name: str) -> str:
    """The variable's value, removed from the environment (see the module's docstring)."""
    value = os.environ[name]
    _overwrite_c_value(name)
    os.environ.pop(name, None)  # os.environ's own copy, and unsetenv() in the C library
    return value


def _overwrite_c_value(name: str) -> None:
    """Zero the value's bytes where the C library's getenv finds them: for a variable the
    process was started with, that is the initial environment block that
    /proc/<pid>/environ reads, which unsetenv only unlinks. Linux only, best effort: the
    bytes are the process's own, writable memory; any failure leaves them as they were."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        libc = ctypes.CDLL(None)
        libc.getenv.restype = ctypes.c_void_p
        libc.getenv.argtypes = [ctypes.c_char_p]
        libc.strlen.restype = ctypes.c_size_t
        libc.strlen.argtypes = [ctypes.c_void_p]
        where = libc.getenv(os.fsencode(name))
        if where:
            ctypes.memset(where, 0, libc.strlen(where))
    except (OSError, AttributeError, ValueError):
        return
