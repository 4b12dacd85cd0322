"""A passphrase file is judged as ssh's StrictModes judges a key file.

Why: ``--passphrase-file`` / ``--new-passphrase-file`` hand dvault the recovery or an
identity passphrase. A file another local account can write lets it choose the passphrase
that ``init``, ``keygen`` or ``dvault passphrase`` then sets (and so know it): refused,
with the fix, before the file is read (vault._files.check_private: the file and every
folder above it up to the home folder must be the user's (or root's) and writable by no
one else). A file another account can read may have been read already: the user is told
(even under --quiet), and must both fix the mode and judge whether to change the
passphrase; refusing would only hide the second half.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import click


def check(file: Path) -> None:
    """Refuse (UnsafeFile) a passphrase file others can write; warn if others can read it."""
    from vault._files import check_private
    check_private(file, "passphrase file")
    who = _readers(file)
    if who is not None:
        mode = stat.S_IMODE(os.stat(os.path.realpath(file)).st_mode)
        click.echo(f"dvault: warning: passphrase file {file} can be read by {who} (mode {mode:04o}): "
                   f"chmod 600 {file}, and change the passphrase if anyone else may have read it", err=True)


def _readers(file: Path) -> str | None:
    """"others" or "its group" if that class of accounts can reach and read ``file`` (read
    on the file, search on every folder above it), else None. POSIX only."""
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
