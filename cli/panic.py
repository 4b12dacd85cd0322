"""``dvault panic``: every local secret removed, now, without a question or a passphrase.

Run as ``dvault panic`` it does not load the rest of dvault: ``import vault`` brings in
SQLAlchemy and the crypto libraries, most of a second on a slow laptop, which is time a
panic does not have. So :func:`fast` gives the ``vault`` package a bare module (its
``__init__`` not run) and loads only ``vault.local`` and the file helpers it uses; the
process exits right after, so nothing else ever sees that bare package. ``python -m
vault_cli.main panic`` and the click command run the same :func:`run_panic` with
everything loaded.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

USAGE = "usage: dvault panic [-v|--verbose]"


def run_panic(verbose: bool = False, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """End running shells, then overwrite and remove every file of the inventory
    (vault.local); print what was removed (each file with ``verbose``), what was left and
    why, and the time taken. 0 if nothing is left, 1 otherwise: a file a removed link named
    (links are never followed) and a config or written-files list that was not followed
    count as left, since what they name may still be there."""
    from vault import local

    out, err = out or sys.stdout, err or sys.stderr
    start = time.monotonic()
    shells = local.end_shells()
    inv = local.inventory()
    found = local.survey(inv.targets + local.marks())
    done = local.remove(found, inv)
    local.tidy(local.own_folders())
    elapsed = time.monotonic() - start
    if out.isatty():  # the last lookups, and what this printed before, off the screen and scrollback
        out.write("\x1b[H\x1b[2J\x1b[3J")
    for line in shells:
        out.write(f"ended {line}\n")
    removed = [r for r in done if r.ok]
    if verbose:
        for r in removed:
            out.write(f"removed  {r.found.target.kind:<18} {r.found.target.path}\n")
    left = local.left(found, done)
    for t, why in left:
        err.write(f"dvault: warning: left {t.kind} {t.path}: {why}\n")
    for note in inv.notes:
        err.write(f"dvault: warning: {note}\n")
    unread = f", {len(inv.notes)} not followed" if inv.notes else ""
    out.write(f"dvault panic: {len(removed)} file(s) removed, {len(left)} left{unread}, {len(shells)} shell(s) "
              f"ended, in {elapsed:.3f} s\n")
    out.flush()
    return 0 if not left and not inv.notes else 1


def fast(args: list[str]) -> int:
    """``dvault panic`` from the entry point, before anything else is loaded."""
    if args and args[0] in ("-h", "--help"):
        sys.stdout.write(f"{USAGE}\n\nRemove every local secret of dvault now, with no question (see dvault travel "
                         "for the checked way).\n")
        return 0
    if any(a not in ("-v", "--verbose") for a in args):
        sys.stderr.write(f"dvault: error: {USAGE}\n")
        return 1
    _bare_vault_package()
    return run_panic(verbose=bool(args))


def _bare_vault_package() -> None:
    """Make ``import vault.local`` load that module and what it imports, not the package's
    ``__init__`` (see the module docstring)."""
    if "vault" in sys.modules:
        return
    import importlib.util
    import types

    spec = importlib.util.find_spec("vault")
    if spec is None or spec.submodule_search_locations is None:
        return  # let the ordinary import say what is wrong
    package = types.ModuleType("vault")
    package.__path__ = list(spec.submodule_search_locations)
    package.__spec__ = spec
    sys.modules["vault"] = package
