"""What the client leaves on a laptop, found and removed: the files behind ``dvault travel``
and ``dvault panic``.

A laptop that crosses a hostile border, or is about to be taken, should carry nothing
that opens the vault or shows what is in it. What the client writes is known: identity
files, the known-vaults (``.vaults``) and checkpoints (``.checkpoints``) files beside
them, the config file that names the vault and the identity, a SQLite vault with its
``-wal``/``-shm``/``-journal`` companions, and exports. Most of these sit in fixed
places; an export, an identity made with ``keygen -o`` or a vault made by ``init`` can
be anywhere, so the client keeps a list of the paths it wrote (:func:`remember`), in
the data folder: paths only, no value, no key.

Removing is done so that a mistake cannot reach beyond those files:

- never through a symbolic link: a link found at one of these paths is removed itself,
  and what it points to is left alone (an identity path made to point at a thesis must
  not destroy the thesis);
- only a regular file owned by this account, and only if it looks like what it should
  be (an identity file's header, a SQLite file's magic, ...), checked on the opened file
  itself, not on a path that could be swapped in between;
- overwritten with random bytes, flushed to the disk, renamed to a random name, then
  unlinked. Why overwrite: an unlinked file's blocks otherwise keep their bytes until
  reused. Where this does not reach (SSDs remap writes, copy-on-write filesystems and
  snapshots keep old blocks, swap, backups, shell history) is in docs/threat-model.md
  3.9; full-disk encryption is what covers those.

A running ``dvault shell`` holds keys and shows names on its screen, so it marks itself
(:class:`ShellMark`, a locked file in the data folder) and :func:`end_shells` asks it to
close (SIGTERM), then kills it if it has not within a short grace time.

No cryptography here, and nothing that needs a passphrase: panic must work for whoever
runs it. This module imports only the standard library, platformdirs and the file
helpers, so that ``dvault panic`` starts fast (cli/panic.py).
"""

from __future__ import annotations

import os
import re
import stat
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ._files import check_private, make_private_dirs
from .errors import UnsafeFile, VaultError

APP = "defenders-vault"
#: The list of files dvault wrote, in the data folder (docs/format.md 8f).
WRITTEN = "written"
WRITTEN_HEADER = b"# defenders-vault: files dvault wrote, for dvault travel and panic (paths only, hex)\n"
#: The folder, in the data folder, where each running shell keeps its mark.
RUN = "run"

IDENTITY, PINS, CHECKPOINTS, CONFIG = "identity", "known vaults", "checkpoints", "config"
VAULT, VAULT_SIDE, EXPORT, TEMP, WRITTEN_LIST, SHELL_MARK = (
    "vault", "vault journal", "export", "temporary", "written-files list", "shell mark")
#: The kinds a written-files line may name.
LISTED = ("identity", "vault", "export")
#: Removal order: keys first, then plaintext, then the vault (the largest), the list last.
ORDER = (IDENTITY, CHECKPOINTS, PINS, CONFIG, EXPORT, VAULT, VAULT_SIDE, TEMP, SHELL_MARK, WRITTEN_LIST)

_SQLITE_MAGIC = b"SQLite format 3\x00"
_WAL_MAGIC = (b"\x37\x7f\x06\x82", b"\x37\x7f\x06\x83")
_TEMP_NAME = re.compile(r"\.tmp-[0-9a-f]{8}$")  # _files.replace_private's temporary files


def data_dir() -> Path:
    """The per-user data folder (identity files, the written-files list, shell marks)."""
    import platformdirs
    return Path(platformdirs.user_data_dir(APP, appauthor=False))


def config_file() -> Path:
    """The config file the CLI reads: ``DVAULT_CONFIG``, else the per-user config folder's."""
    if os.environ.get("DVAULT_CONFIG"):
        return Path(os.environ["DVAULT_CONFIG"])
    import platformdirs
    return Path(platformdirs.user_config_dir(APP, appauthor=False)) / "config.toml"


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite vault location (a bare path or ``sqlite:///PATH``), None for a
    database server."""
    if not url or url.strip() == ":memory:":
        return None
    if "://" not in url:
        return Path(url).expanduser()
    scheme, _, rest = url.partition("://")
    if scheme.split("+")[0].lower() != "sqlite" or not rest.startswith("/"):
        return None
    path = rest[1:].split("?")[0]
    return Path(path) if path and path != ":memory:" else None


# -- the list of written files ------------------------------------------------------------------
def remember(path: str | os.PathLike[str], kind: str, *, folder: Path | None = None) -> None:
    """Add ``path`` (absolute) to the written-files list, so that travel and panic find it.
    One ``write`` of one line to a file opened for appending: two clients writing at once
    each add their own line. VaultError if the list cannot be written."""
    if kind not in LISTED:
        raise ValueError(f"unknown kind {kind!r}")
    base = folder or data_dir()
    make_private_dirs(base, "the list of files dvault wrote")
    target = base / WRITTEN
    check_private(target, "list of files dvault wrote")
    line = f"{kind} {os.fsencode(os.path.abspath(path)).hex()}\n".encode("ascii")
    try:
        fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW, 0o600)
    except OSError as e:
        raise VaultError(f"cannot write the list of files dvault wrote ({target}): {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise VaultError(f"the list of files dvault wrote ({target}) is not a regular file")
        os.write(fd, (WRITTEN_HEADER if st.st_size == 0 else b"") + line)
        os.fsync(fd)
    except OSError as e:
        raise VaultError(f"cannot write the list of files dvault wrote ({target}): {e.strerror}") from None
    finally:
        os.close(fd)


def written(folder: Path | None = None) -> list[tuple[str, Path]]:
    """The (kind, path) entries of the written-files list. UnsafeFile if another account
    could have written it (its paths are then not followed: they could name any file)."""
    target = (folder or data_dir()) / WRITTEN
    check_private(target, "list of files dvault wrote")
    try:
        fd = os.open(target, os.O_RDONLY | _NOFOLLOW)
    except FileNotFoundError:
        return []
    except OSError as e:
        if os.path.islink(target):
            raise UnsafeFile(f"refusing the list of files dvault wrote ({target}): it is a symbolic link") from None
        raise VaultError(f"cannot read the list of files dvault wrote ({target}): {e.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        data = fh.read()
    out: list[tuple[str, Path]] = []
    for raw in data.splitlines():
        parts = raw.decode("ascii", "replace").split(" ")
        if not raw or raw.startswith(b"#") or len(parts) != 2 or parts[0] not in LISTED:
            continue
        try:
            path = os.fsdecode(bytes.fromhex(parts[1]))
        except ValueError:
            continue
        if os.path.isabs(path):
            out.append((parts[0], Path(path)))
    return out


# -- the inventory ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """A file the client may have left: where, what kind, and how it was found."""
    path: Path
    kind: str
    why: str


@dataclass
class Inventory:
    """Every file to look at, the database servers named (no local file: travel checks that
    they are reachable), and what could not be followed (an unsafe config or list)."""
    targets: list[Target] = field(default_factory=list)
    servers: list[str] = field(default_factory=list)
    vault_files: list[Path] = field(default_factory=list)
    identities: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: The written-files list's entries and their companions: while any of them is still on
    #: disk the list is kept (:func:`remove`), as it is the only record of where they are.
    listed: list[Path] = field(default_factory=list)
    #: The written-files list could not be followed: it is then kept, not removed.
    list_unread: bool = False


def inventory(identities: Iterable[Path] = (), urls: Iterable[str] = (), *, folder: Path | None = None) -> Inventory:
    """Find what the client knows of: the identities and vault locations given (the
    command's options), ``DVAULT_IDENTITY`` and ``DVAULT_URL``, the config file's, the
    default identity, and the written-files list; each identity with its known-vaults
    and checkpoints files, each SQLite vault with its companions, and the temporary
    files an interrupted atomic replace leaves beside them."""
    inv = Inventory()
    base = folder or data_dir()
    idents: list[tuple[Path, str]] = [(Path(p), "given") for p in identities]
    places: list[tuple[str, str]] = [(u, "given") for u in urls]
    if os.environ.get("DVAULT_IDENTITY"):
        idents.append((Path(os.environ["DVAULT_IDENTITY"]), "DVAULT_IDENTITY"))
    if os.environ.get("DVAULT_URL"):
        places.append((os.environ["DVAULT_URL"], "DVAULT_URL"))
    conf = _config(inv)
    if conf.get("identity"):
        idents.append((Path(conf["identity"]).expanduser(), "config file"))
    if conf.get("vault"):
        places.append((conf["vault"], "config file"))
    idents.append((base / "identity.dvid", "default place"))
    listed = _listed(inv, base)
    inv.listed = [_abs(q) for k, p in listed for q in (p, *_companions(k, p))]
    idents += [(p, "written-files list") for k, p in listed if k == IDENTITY]
    places += [(str(p), "written-files list") for k, p in listed if k == VAULT]
    add = _adder(inv)
    for path, why in idents:
        if add(path, IDENTITY, why):
            inv.identities.append(_abs(path))
            add(path.with_name(path.name + ".vaults"), PINS, f"beside {path.name}")
            add(path.with_name(path.name + ".checkpoints"), CHECKPOINTS, f"beside {path.name}")
    add(config_file(), CONFIG, "config file")
    for url, why in places:
        _add_place(inv, add, url, why)
    for path in (p for k, p in listed if k == EXPORT):
        add(path, EXPORT, "written-files list")
    for t in list(inv.targets):
        if t.kind in (IDENTITY, PINS, CHECKPOINTS, CONFIG):
            for tmp in _temporaries(t.path):
                add(tmp, TEMP, f"left by an interrupted write of {t.path.name}")
    if not inv.list_unread:
        # a list whose entries were not followed is kept: it is the only record of them
        add(base / WRITTEN, WRITTEN_LIST, "data folder")
    inv.targets.sort(key=lambda t: ORDER.index(t.kind))
    return inv


def _abs(path: Path) -> Path:
    return Path(os.path.abspath(path))  # not realpath: a symbolic link is itself the target


def _adder(inv: Inventory) -> Callable[[Path, str, str], bool]:
    seen: set[Path] = set()

    def add(path: Path, kind: str, why: str) -> bool:
        p = _abs(path)
        if p in seen:
            return False
        seen.add(p)
        inv.targets.append(Target(p, kind, why))
        return True
    return add


def _add_place(inv: Inventory, add: Callable[[Path, str, str], bool], url: str, why: str) -> None:
    path = sqlite_path(url)
    if path is None:
        if url not in inv.servers:
            inv.servers.append(url)
        return
    if add(path, VAULT, why):
        inv.vault_files.append(_abs(path))
        for suffix in ("-wal", "-shm", "-journal"):
            add(path.with_name(path.name + suffix), VAULT_SIDE, f"beside {path.name}")


def _config(inv: Inventory) -> dict[str, str]:
    """The config file's ``identity`` and ``vault``, if it is safe to follow: a config that
    another account can write could point panic at any file."""
    import tomllib
    path = config_file()
    try:
        check_private(path, "config file")
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except UnsafeFile as e:
        inv.notes.append(f"{e}; its identity and vault entries were not followed")
        return {}
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError):
        inv.notes.append(f"the config file {path} cannot be read; its entries were not followed")
        return {}
    return {k: v for k, v in data.items() if k in ("identity", "vault") and isinstance(v, str)}


def _listed(inv: Inventory, base: Path) -> list[tuple[str, Path]]:
    """The list's entries; none, a note, and ``list_unread`` if it cannot be followed."""
    try:
        return written(base)
    except VaultError as e:
        inv.notes.append(f"{e}; its entries were not followed, and the list is kept (fix it, then run again)")
        inv.list_unread = True
        return []


def _companions(kind: str, path: Path) -> tuple[Path, ...]:
    """The files found beside a listed entry (inventory adds them from the entry's path)."""
    if kind == IDENTITY:
        return tuple(path.with_name(path.name + s) for s in (".vaults", ".checkpoints"))
    if kind == VAULT:
        return tuple(path.with_name(path.name + s) for s in ("-wal", "-shm", "-journal"))
    return ()


def _temporaries(path: Path) -> list[Path]:
    try:
        with os.scandir(path.parent) as entries:
            return [Path(e.path) for e in entries
                    if e.name.startswith(path.name + ".tmp-") and _TEMP_NAME.search(e.name)]
    except OSError:
        return []


# -- what is there --------------------------------------------------------------------------------
def recognised(kind: str, head: bytes, size: int) -> bool:
    """Whether a file's first bytes fit its kind. Why: the config file, an environment
    variable or the written-files list can name any path; a file that does not look like
    an identity, a pin file or a vault is not one dvault wrote there, and is left alone.
    Empty files hold nothing and always qualify. Exports, the config, journals and the
    client's own lists have no mark of their own: their path is what makes them ours."""
    if size == 0:
        return True
    if kind == IDENTITY:
        return head.startswith(b"# defenders-vault identity")
    if kind == PINS:
        return head.startswith(b"# defenders-vault known vaults")
    if kind == CHECKPOINTS:
        return re.match(rb"[0-9a-f]{32} dvcp1:", head) is not None
    if kind == VAULT:
        return head.startswith(_SQLITE_MAGIC)
    if kind == WRITTEN_LIST:
        return head.startswith(WRITTEN_HEADER[:24])
    return True


@dataclass(frozen=True)
class Found:
    """A target as found on disk: ``state`` is ``present`` (a file dvault will remove),
    ``link`` (a symbolic link: removed, its target left), ``absent``, or ``left`` with the
    reason in ``detail``."""
    target: Target
    state: str
    size: int = 0
    detail: str = ""
    #: For a link: the file it names, if that looks like a dvault file of the target's kind.
    points_to: Path | None = None

    @property
    def removable(self) -> bool:
        return self.state in ("present", "link")


def survey(targets: Iterable[Target]) -> list[Found]:
    """Look at each target without following a symbolic link and without changing it."""
    return [_look(t) for t in targets]


def _look(t: Target) -> Found:
    try:
        st = os.lstat(t.path)
    except FileNotFoundError:
        return Found(t, "absent")
    except OSError as e:
        return Found(t, "left", detail=f"cannot be examined ({e.strerror})")
    if stat.S_ISLNK(st.st_mode):
        return Found(t, "link", detail=f"a symbolic link to {os.readlink(t.path)}: the link is removed, not its target",
                     points_to=_ours_behind(t))
    why = _refusal(st)
    if why:
        return Found(t, "left", st.st_size, why)
    try:
        fd = os.open(t.path, os.O_RDONLY | _NOFOLLOW | _NONBLOCK)
    except OSError as e:
        return Found(t, "left", st.st_size, f"cannot be read ({e.strerror})")
    try:
        head = os.pread(fd, 64, 0)
    finally:
        os.close(fd)
    if not recognised(t.kind, head, st.st_size):
        return Found(t, "left", st.st_size, f"does not look like a dvault {t.kind} file")
    return Found(t, "present", st.st_size)


def _ours_behind(t: Target) -> Path | None:
    """The file the link at ``t`` names, if it is a non-empty regular file that fits the
    kind (a kind with no mark of its own, an export, fits whatever it holds)."""
    real = Path(os.path.realpath(t.path))
    try:
        fd = os.open(real, os.O_RDONLY | _NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
            return None
        return real if recognised(t.kind, os.pread(fd, 64, 0), st.st_size) else None
    except OSError:
        return None
    finally:
        os.close(fd)


def _refusal(st: os.stat_result) -> str:
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        return f"belongs to another account (uid {st.st_uid})"
    return ""


# -- removal --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Removed:
    found: Found
    ok: bool
    detail: str


def remove(found: Iterable[Found], inv: Inventory | None = None) -> list[Removed]:
    """Overwrite and unlink every removable file (a link: unlink only), in the order given;
    a failure is reported and the rest go on. The folders dvault made for these files are
    removed too if that leaves them empty.

    With ``inv``, the written-files list (last in the order) is kept, as a failure, while
    any of its entries is still on disk: removing it would leave an export nobody can
    find again, and a later panic nothing to go by."""
    pad = os.urandom(_CHUNK)  # not secret: it only has to be other bytes than the file's
    out = []
    for f in found:
        if not f.removable:
            continue
        still = [p for p in inv.listed if os.path.lexists(p)] if inv and f.target.kind == WRITTEN_LIST else []
        if still:
            out.append(Removed(f, False, f"kept: it names {len(still)} file(s) still here, for the next travel "
                                         "or panic"))
            continue
        out.append(_remove_one(f, pad))
    return out


def left(found: list[Found], done: list[Removed]) -> list[tuple[Target, str]]:
    """Everything travel and panic leave, each with why: refused when checked, failed when
    removed, or named by a removed link (:func:`links_left`)."""
    out = [(f.target, f.detail) for f in found if f.state == "left"]
    out += [(r.found.target, r.detail) for r in done if not r.ok]
    return out + links_left(found)


def links_left(found: Iterable[Found]) -> list[tuple[Target, str]]:
    """The files that removed symbolic links named and that look like dvault's, still on
    disk: a link is never followed (it could name anything), so what it named is left, and
    must be said to be (an identity kept on a stick and linked from the default place)."""
    out = []
    for f in found:
        if f.points_to is not None and os.path.lexists(f.points_to) and not os.path.lexists(f.target.path):
            out.append((Target(f.points_to, f.target.kind, f"named by the link {f.target.path}"),
                        f"the file the symbolic link {f.target.path} named; a link is never followed: "
                        "remove it yourself"))
    return out


_CHUNK = 1 << 20


def _remove_one(f: Found, pad: bytes) -> Removed:
    path = f.target.path
    try:
        dfd = os.open(path.parent, os.O_RDONLY | _DIRECTORY)
    except OSError as e:
        return Removed(f, False, f"its folder cannot be opened ({e.strerror})")
    try:
        return Removed(f, *_wipe_in(dfd, path.name, f.target.kind, pad))
    except FileNotFoundError:  # gone since it was looked at (a journal its last user removed)
        return Removed(f, True, "already gone")
    except OSError as e:
        return Removed(f, False, f"not removed ({e.strerror})")
    finally:
        try:
            os.fsync(dfd)  # the removal of the name is on disk before panic says it is done
        except OSError:
            pass
        os.close(dfd)


def _wipe_in(dfd: int, name: str, kind: str, pad: bytes) -> tuple[bool, str]:
    """In the folder ``dfd``: unlink a symbolic link; overwrite and unlink a regular file of
    ours that fits ``kind``. Every step is on the file opened without following a link, and
    checked to be the file that was looked at."""
    st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    if stat.S_ISLNK(st.st_mode):
        os.unlink(name, dir_fd=dfd)
        return True, "symbolic link removed (its target left alone)"
    why = _refusal(st)
    if why:
        return False, f"left: {why}"
    fd = _open_writable(dfd, name)
    try:
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) or not stat.S_ISREG(now.st_mode):
            return False, "left: it changed while being removed"
        if not recognised(kind, os.pread(fd, 64, 0), now.st_size):
            return False, f"left: does not look like a dvault {kind} file"
        _overwrite(fd, now.st_size, pad)
    finally:
        os.close(fd)
    gone = name
    try:  # the directory entry's name is not left behind either, where the filesystem reuses it
        gone = f".dvault-{os.urandom(6).hex()}"
        os.rename(name, gone, src_dir_fd=dfd, dst_dir_fd=dfd)
    except OSError:
        gone = name
    os.unlink(gone, dir_fd=dfd)
    return True, "overwritten and removed"


def _open_writable(dfd: int, name: str) -> int:
    try:
        return os.open(name, os.O_RDWR | _NOFOLLOW | _NONBLOCK, dir_fd=dfd)
    except PermissionError:  # a file made read-only (0400): ours, so make it writable first
        fd = os.open(name, os.O_RDONLY | _NOFOLLOW | _NONBLOCK, dir_fd=dfd)
        try:
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
        return os.open(name, os.O_RDWR | _NOFOLLOW | _NONBLOCK, dir_fd=dfd)


def _overwrite(fd: int, size: int, pad: bytes) -> None:
    """Random bytes over the whole file, flushed: without the flush the kernel may drop the
    new bytes with the file when it is unlinked, and the old ones stay on the disk."""
    done = 0
    while done < size:
        n = os.pwrite(fd, pad[: min(len(pad), size - done)], done)
        if n <= 0:
            raise OSError(5, "short write")
        done += n
    os.fsync(fd)


def tidy(folders: Iterable[Path]) -> None:
    """Remove the given folders if they are empty (never a folder that holds anything)."""
    for d in folders:
        try:
            os.rmdir(d)
        except OSError:
            pass


def own_folders(folder: Path | None = None) -> list[Path]:
    """The folders dvault made for itself, innermost first: removed by panic if empty."""
    base = folder or data_dir()
    return [base / RUN, base, config_file().parent if config_file().parent.name == APP else base]


# -- running shells -------------------------------------------------------------------------------
class ShellMark:
    """A running ``dvault shell``'s mark: ``run/<pid>`` in the data folder, holding the
    pid, locked (flock) for as long as the process lives. Why the lock: a mark left by a
    shell that died names a pid that may since belong to any process; only a mark whose
    lock is held names a live shell, which is then safe to signal."""

    def __init__(self, folder: Path | None = None) -> None:
        self.path = (folder or data_dir()) / RUN / str(os.getpid())
        self._fd: int | None = None

    def __enter__(self) -> ShellMark:
        import fcntl
        make_private_dirs(self.path.parent, "the marks of running shells")
        check_private(self.path.parent, "folder of running shells' marks")
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o600)
        except OSError as e:
            raise VaultError(f"cannot write {self.path}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        except OSError as e:
            os.close(fd)
            raise VaultError(f"cannot lock {self.path}: {e.strerror}") from None
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is None:
            return
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None


def end_shells(folder: Path | None = None, *, grace: float = 0.5) -> list[str]:
    """Ask every running shell to close (SIGTERM), wait up to ``grace`` seconds for each
    to let go of its mark, then kill what is left (SIGKILL), and remove the marks. Returns
    one line per shell. POSIX only (elsewhere shells leave no mark)."""
    try:
        import fcntl
        import signal
    except ImportError:
        return []
    run = (folder or data_dir()) / RUN
    live: list[tuple[int, int]] = []
    out: list[str] = []
    try:
        names = sorted(os.listdir(run))
    except OSError:
        return []
    for name in names:
        fd = _open_mark(run / name)
        if fd is None:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.close(fd)  # nobody holds it: a shell that has ended
            continue
        except OSError:
            pass
        pid = _mark_pid(fd)
        if pid is None or pid == os.getpid():
            os.close(fd)
            continue
        try:
            os.kill(pid, signal.SIGTERM)
            live.append((pid, fd))
        except OSError:
            os.close(fd)
    for pid, fd in live:
        how = "closed" if _released(fd, time.monotonic() + grace) else None
        if how is None:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
            how = "killed" if _released(fd, time.monotonic() + 1.0) else "did not end"
        os.close(fd)
        out.append(f"dvault shell (pid {pid}): {how}")
    return out


def _open_mark(path: Path) -> int | None:
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _NONBLOCK)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode) or _refusal(os.fstat(fd)):
        os.close(fd)
        return None
    return fd


def _mark_pid(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() and 1 < int(text) < 2**31 else None


def _released(fd: int, deadline: float) -> bool:
    import fcntl
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)


def marks(folder: Path | None = None) -> list[Target]:
    """The shell marks present (removed by panic once the shells are ended)."""
    run = (folder or data_dir()) / RUN
    try:
        return [Target(run / n, SHELL_MARK, "running shells") for n in sorted(os.listdir(run))]
    except OSError:
        return []


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # a FIFO planted at a path must not hang the removal
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
