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
import stat
import sys
from pathlib import Path

import click

IDENTITY_ENV = ("DVAULT_IDENTITY_PASSPHRASE", "DVAULT_PASSPHRASE")
RECOVERY_ENV = ("DVAULT_RECOVERY_PASSPHRASE", "DVAULT_PASSPHRASE")
NEW_ENV = ("DVAULT_NEW_PASSPHRASE",)  # `dvault passphrase`: the one being set

#: The shortest new passphrase dvault sets (identity or recovery), in characters. An
#: identity file or a copied database is attacked offline, where only Argon2id's cost
#: stands between the attacker and the keys; 12 characters (three or four words) keep a
#: dictionary guess out of reach at that cost, a short word or PIN does not.
MIN_PASSPHRASE = 12


def read_passphrase(file: Path | None, prompt: str, *, confirm: bool = False,
                    env: tuple[str, ...]) -> str:
    """The passphrase from ``file``, else the first of the ``env`` variables that is set,
    else a prompt."""
    if file is not None:
        from vault._files import check_private
        check_private(file, "passphrase file")  # refused if another account can write it (StrictModes)
        _check_file_mode(file)  # a warning if another account can read it
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


def read_new_passphrase(file: Path | None, prompt: str, *, env: tuple[str, ...]) -> str:
    """A passphrase about to be set (asked twice at a prompt), refused if shorter than
    MIN_PASSPHRASE characters, with one line saying what is wanted."""
    value = read_passphrase(file, prompt, confirm=True, env=env)
    if len(value) < MIN_PASSPHRASE:
        raise click.UsageError(f"the new passphrase is too short: use at least {MIN_PASSPHRASE} characters "
                               "(e.g. four random words)")
    return value


def _check_file_mode(file: Path) -> None:
    """Warn, even under --quiet, when another account can read a passphrase file: its mode
    lets the group or others read it, and every folder above it lets them through (a
    0644 file in a 0700 folder is out of their reach). A warning, not a refusal: whoever
    could read it may have done so already, so the user must both fix the mode and judge
    whether to change the passphrase; a refusal would only hide the second half."""
    who = readable_by_others(file)
    if who is not None:
        mode = stat.S_IMODE(file.stat().st_mode)
        click.echo(f"dvault: warning: passphrase file {file} can be read by {who} (mode {mode:04o}): "
                   f"chmod 600 {file}, and change the passphrase if anyone else may have read it", err=True)


def readable_by_others(file: Path) -> str | None:
    """"others" or "its group" if that class of accounts can reach and read ``file``
    (POSIX modes: read on the file, search on every folder above), else None."""
    if not hasattr(os, "getuid"):
        return None
    try:
        path = Path(os.path.realpath(file))
        mode = stat.S_IMODE(path.stat().st_mode)
        folders = [stat.S_IMODE(q.stat().st_mode) for q in path.parents]
    except OSError:
        return None  # the read itself reports it
    if mode & 0o004 and all(m & 0o001 for m in folders):
        return "others"
    if mode & 0o040 and all(m & 0o011 for m in folders):
        return "its group"
    return None


def _ask(prompt: str, confirm: bool) -> str:
    """A no-echo prompt on a terminal. Without one (a pipe, cron) getpass would print two
    warnings naming the interpreter and read stdin anyway: read the line ourselves, with
    no prompt to a screen that is not there, and make end of input one clear error."""
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
