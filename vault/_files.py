"""Private files: the one place that writes key material or exports to disk, creates the
folders that hold them, and checks that nobody else can change what the client trusts."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import UnsafeFile, VaultError, VaultExists


def write_private(path: str | os.PathLike[str], data: bytes | list[bytes], *,
                  error: type[VaultError] = VaultError) -> Path:
    """Create ``path`` with mode 0600 and write ``data`` (bytes, or a list of parts written one
    after another: a large file need not be joined in memory first); refuse to overwrite
    anything, and leave no half-written file behind if the write fails. ``error``: the class
    raised when the file cannot be created (e.g. the store's own StoreError)."""
    p = Path(path)
    try:
        fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        raise VaultExists(f"refusing to overwrite {p}") from None
    except OSError as e:
        raise error(f"cannot create {p}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            if isinstance(data, list):
                fh.writelines(data)
            else:
                fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())  # an export or identity file that a power cut leaves empty is lost
    except BaseException as e:
        p.unlink(missing_ok=True)
        if isinstance(e, OSError):  # a full disk or an I/O error: one line, no half file
            raise error(f"cannot write {p}: {e.strerror}") from None
        raise
    _fsync_dir(p.parent)
    return p


def replace_private(path: str | os.PathLike[str], data: bytes, *, error: type[VaultError] = VaultError) -> Path:
    """Replace ``path`` with ``data`` atomically: a 0600 temporary file beside it, fsynced,
    renamed over it, and the directory fsynced, so a crash or power cut leaves either the
    old file or the new one, never half of each and never neither.

    A symbolic link is followed: the file it names is what the caller read and means to
    change (an identity kept on a stick and linked from the default place), so the
    temporary file goes in the target's folder and is renamed over the target, keeping the
    link. Renaming over the link itself would leave the real file unchanged (on its old
    passphrase, say) while reporting success. Returns the path actually replaced."""
    p = Path(os.path.realpath(path))
    tmp = p.with_name(f"{p.name}.tmp-{os.urandom(4).hex()}")
    write_private(tmp, data, error=error)
    try:
        os.replace(tmp, p)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise error(f"cannot replace {p}: {e.strerror}") from None
        raise
    _fsync_dir(p.parent)
    return p


def _fsync_dir(directory: Path) -> None:
    """Make a created or renamed directory entry durable (POSIX; a no-op where a directory
    cannot be opened, e.g. on Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def make_private_dirs(folder: str | os.PathLike[str], what: str, *, error: type[VaultError] = VaultError) -> Path:
    """Create ``folder`` and every missing parent with mode 0700, whatever the umask.

    Why each one: ``Path.mkdir(parents=True, mode=0o700)`` gives the mode to the last folder
    only; under ``umask 000`` a fresh ``~/.local`` and ``~/.local/share`` came out 0777, and
    another local account could then swap the data folder under them for one of its own
    (its identity file, its known-vaults file). Folders that already exist are left as
    they are (check_private says if they are unsafe). ``what``: the file the folder is for,
    as an error names it ("the known-vaults file /home/sam/...")."""
    p = Path(folder)
    missing: list[Path] = []
    for q in (p, *p.parents):
        if q.exists() or q.is_symlink():
            break
        missing.append(q)
    for q in reversed(missing):
        try:
            q.mkdir(mode=0o700)
        except FileExistsError:  # made at the same moment by someone else: check_private judges it
            continue
        except OSError as e:
            raise error(f"cannot create the folder of {what}: {e.strerror}") from None
        os.chmod(q, 0o700)  # the umask may have taken bits away: never add any, but be exact
    return p


def check_private(path: str | os.PathLike[str], what: str) -> None:
    """Refuse ``path`` (which need not exist yet) as ssh's StrictModes does: the file and
    every folder above it, up to the user's home folder (or the root), must belong to the
    user (or root) and be writable by no one else, so that no other local account can
    replace what the client trusts (a pin, the identity file, the config naming the vault).
    A world-writable folder with the sticky bit owned by root (``/tmp``) is accepted: there
    nobody can rename or delete another's entries. A group-writable one is accepted only if
    the group is the user's own private group (as Debian's OpenSSH does). POSIX only."""
    if not hasattr(os, "getuid"):
        return
    p = Path(os.path.realpath(path))  # a symlink's target is what is read: judge that
    home = _home()
    uid = os.getuid()
    for q in (p, *p.parents):
        try:
            st = os.stat(q)
        except FileNotFoundError:
            continue  # not made yet: its folder is what counts
        except OSError:
            return  # unreadable: the read itself will fail with its own message
        _check_one(q, st, uid, what, p)
        if q == home:
            break


def _check_one(q: Path, st: os.stat_result, uid: int, what: str, target: Path) -> None:
    label = f"{what} {target}" if q == target else f"the folder {q} of the {what} {target}"
    if st.st_uid not in (uid, 0):
        raise UnsafeFile(f"refusing {label}: it belongs to another user (uid {st.st_uid}); "
                         f"fix: move it to a folder of your own, or chown it to yourself")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o002 and not (stat.S_ISDIR(st.st_mode) and mode & stat.S_ISVTX and st.st_uid == 0):
        raise UnsafeFile(f"refusing {label}: other users can write it; fix: chmod o-w {q}")
    if mode & 0o020 and not _own_group(st.st_gid, uid):
        raise UnsafeFile(f"refusing {label}: its group can write it; fix: chmod g-w {q}")


def _own_group(gid: int, uid: int) -> bool:
    """The group is the user's private group: named as the user, no other member listed,
    and the user's primary group."""
    try:
        import grp
        import pwd
        user = pwd.getpwuid(uid)
        group = grp.getgrgid(gid)
    except (ImportError, KeyError):
        return False
    return user.pw_gid == gid and group.gr_name == user.pw_name and set(group.gr_mem) <= {user.pw_name}


def _home() -> Path | None:
    try:
        return Path(os.path.realpath(Path.home()))
    except (KeyError, RuntimeError):
        return None
