"""Overwrite-then-delete for the plaintext files the desk handles (a form export after
its import).

What it can do: the file's blocks are overwritten in place (random bytes, flushed to
the device) before the name is removed, so an undelete tool or a look at the free blocks
of a plain disk finds noise. What it cannot: an SSD or flash drive writes elsewhere and
remaps (the old cells may keep the data until the drive erases them), and copy-on-write
or journaling file systems (btrfs, ZFS, APFS, ext4 with data journaling), snapshots and
backups keep older copies. Full-disk encryption is what covers those (docs/guide.md)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import click

_CHUNK = 1 << 20


def shreddable(path: Path) -> Path:
    """The file ``path`` names, a symlink resolved (reading through a link reads its
    target: that is the plaintext to shred), once it is known that it can be overwritten
    and deleted; else a one-line error. Why up front: an import with --shred-source
    commits its rows first, and a shred that then fails must not be the common case."""
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop on older Pythons
        raise click.UsageError(f"cannot shred {path}: it cannot be resolved to a file") from None
    if not real.is_file():
        raise click.UsageError(f"cannot shred {path}: not a regular file")
    checks = [(real, os.W_OK, "the file is read-only"),
              (real.parent, os.W_OK | os.X_OK, f"its folder {real.parent} is not writable")]
    if path.is_symlink():
        checks.append((path.parent, os.W_OK | os.X_OK, f"the folder of the link {path} is not writable"))
    for where, mode, why in checks:
        if not os.access(where, mode):
            raise click.UsageError(f"cannot shred {path}: {why} (fix that, or import without --shred-source)")
    return real


def shred_file(path: Path) -> None:
    """Overwrite ``path`` with random bytes once, flush it to the device, then unlink it.
    ``path`` is the file itself (:func:`shreddable` resolves a link): a symlink is never
    followed here (O_NOFOLLOW), so a link put in its place since the check fails instead
    of having some other file overwritten."""
    fd = os.open(path, os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        size = os.fstat(fd).st_size
        done = 0
        while done < size:
            n = min(_CHUNK, size - done)
            done += os.write(fd, secrets.token_bytes(n))
        os.fsync(fd)
    finally:
        os.close(fd)
    path.unlink()
