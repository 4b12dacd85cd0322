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

_CHUNK = 1 << 20


def shred_file(path: Path) -> None:
    """Overwrite ``path`` with random bytes once, flush it to the device, then unlink it.
    A symlink is removed, never followed (its target is not the file that was read)."""
    if path.is_symlink():
        path.unlink()
        return
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
