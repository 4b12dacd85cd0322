"""``dvault travel`` and ``dvault panic``: a laptop that crosses a border, or is about to be
taken, carries nothing that opens the vault or shows what is in it.

travel first makes sure that nothing is lost: a vault on a database server must answer
with the vault this laptop's identity pinned; a vault file on this laptop must have a
copy elsewhere, either checked here (``--copy``: same vault, same keys, its whole log,
the same rows) or, when the copy is out of reach, vouched for by typing the vault's id
back (``--copy-held-by-lead``). Then it shows every file it found (vault.local) and
removes them after one confirmation. It can also leave an audited request in the vault
for the lead to suspend the traveller: with these keys, suspending is revoking (the lead
runs ``dvault user remove``: the slot is deleted and the classes rotated), so that an
identity file recovered from the disk, or a copy taken earlier, opens nothing; on return
the traveller makes a new identity and the lead enrols it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

import vault
from vault import copies as CP
from vault import local as L

from .common import (
    confirm,
    emit,
    identity_path,
    note,
    open_vault,
    pins_path,
    printable,
    prompt_line,
    set_reason,
    shown_url,
    warn,
)

#: The audit action of a request to be suspended while travelling (docs/format.md 13a).
SUSPEND_ACTION = "suspend_request"

F = TypeVar("F", bound=Callable[..., Any])


class Refused(click.ClickException):
    """travel will not remove anything: said in one line, exit 1, nothing changed."""

    def __init__(self, message: str) -> None:
        super().__init__(f"{message}; nothing was removed")


# -- hooks for the other commands -------------------------------------------------------------------
def remember_written(path: Path, kind: str) -> None:
    """Add a file dvault just wrote to the written-files list (vault.local), so that travel
    and panic find it; if that fails, say so (the file itself was written)."""
    try:
        L.remember(path, kind)
    except vault.VaultError as e:
        warn(f"dvault: warning: {path} is not in the list of files dvault wrote ({e}): dvault travel and "
             "dvault panic will not find it; remove it yourself")


def remember_made(url: str, identity: Path | None) -> None:
    """After init or move: the vault file made (a SQLite location) and the identity made."""
    path = L.sqlite_path(url)
    if path is not None:
        remember_written(path, "vault")
    if identity is not None:
        remember_written(identity, "identity")


class Ended(BaseException):
    """Raised by SIGTERM (dvault panic) out of whatever the shell is doing. A BaseException:
    nothing on the way may take it for an error and carry on."""


def ends_on_panic(command: F) -> F:
    """Let ``dvault panic`` end this command (the shell): mark it as running (vault.local
    ShellMark) and, on SIGTERM, unwind (closing the vault on the way), clear the screen and
    its scrollback, and exit 143."""
    import functools
    import signal

    def on_term(_signum: int, _frame: object) -> None:
        raise Ended()

    @functools.wraps(command)
    def run(*args: Any, **kw: Any) -> Any:
        old = signal.signal(signal.SIGTERM, on_term)
        try:
            mark = L.ShellMark().__enter__()
        except (vault.VaultError, ImportError) as e:
            mark = None
            warn(f"dvault: warning: dvault panic cannot end this shell ({e})")
        try:
            return command(*args, **kw)
        except Ended:
            import sys
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut this short
            if sys.stdout.isatty():
                sys.stdout.write("\x1b[H\x1b[2J\x1b[3J")
                sys.stdout.flush()
            warn("dvault: the shell was ended by dvault panic: the vault is closed")
            raise SystemExit(143) from None
        finally:
            signal.signal(signal.SIGTERM, old)
            if mark is not None:
                mark.__exit__(None, None, None)
    return run  # type: ignore[return-value]


def suspend_requests(v: vault.Vault) -> list[dict[str, Any]]:
    """The lead's view of the suspension requests in the log: who asked, when, why, and
    whether it is done (their enrolment revoked) or pending."""
    from vault.users import REVOKED
    users = {u.user_id: u for u in v.users(include_revoked=True)}
    rows = []
    for e in v.audit_entries(action=SUSPEND_ACTION):
        u = users.get(e["actor"])
        rows.append({"by": printable(u.name) if u else "?", "user": e["actor"],
                     "asked (UTC)": time.strftime("%Y-%m-%d %H:%M", time.gmtime(e["at"] / 1000)),
                     "status": "pending" if u is not None and u.role != REVOKED else "done (revoked)",
                     "check": "" if e.get("verified", True) else "FORGED?", "reason": printable(e["reason"] or ""),
                     "name": u.name if u else ""})
    return rows


def show_suspend_requests(rows: list[dict[str, Any]], as_json: bool) -> None:
    if not rows:
        return
    if not as_json:
        click.echo("suspension requests (travel):", err=True)
    emit(rows, ["by", "user", "asked (UTC)", "status", "check", "reason"], as_json)
    for r in rows:
        if r["status"] == "pending" and not r["check"]:
            note(f"to suspend {r['by']}: dvault user remove {r['user']} (revokes the identity and rotates the keys "
                 "it held); on return, enrol their new identity: dvault user add LINE --name NAME --role ROLE")


# -- travel --------------------------------------------------------------------------------------------
@click.command()
@click.option("--vault", "vault_url", metavar="URL",
              help="The vault this laptop uses (else DVAULT_URL or the config file; vaults dvault made here "
                   "count too).")
@click.option("--identity", type=click.Path(dir_okay=False, path_type=Path),
              help="Your identity file (else DVAULT_IDENTITY, the config file and the default place).")
@click.option("--copy", "copy_places", multiple=True, metavar="PATH",
              help="A copy of a vault file on this laptop, held elsewhere (the lead's drive, a server): travel "
                   "checks it holds everything this one does (repeatable).")
@click.option("--copy-to", "copy_to", type=click.Path(dir_okay=False, path_type=Path),
              help="Make that copy now, at this new file (on a drive that stays with the lead), then check it "
                   "like --copy. The copy stays even if you then answer no.")
@click.option("--copy-held-by-lead", "held_by_lead", is_flag=True,
              help="The lead holds a copy of the vault file here, out of reach to check: you then type its id.")
@click.option("--vault-id", "vault_ids", multiple=True, metavar="ID",
              help="The id of a vault, as the lead confirms it (for --copy-held-by-lead, or a server's vault no "
                   "identity here pinned); else it is asked for.")
@click.option("--request-suspend", is_flag=True,
              help="Ask the lead, by an audited request in the vault on the server, to suspend you (revoke your "
                   "identity) while you travel. Needs your identity's passphrase.")
@click.option("--reason", help="With --request-suspend: why and until when (sealed to the lead; prompted if missing).")
@click.option("--passphrase-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="With --request-suspend: your identity passphrase from this file.")
@click.option("--dry-run", is_flag=True, help="Check and show what would be removed; remove nothing.")
@click.option("--yes", is_flag=True, help="Do not ask before removing (scripts).")
def travel(vault_url: str | None, identity: Path | None, copy_places: tuple[str, ...], copy_to: Path | None,
           held_by_lead: bool, vault_ids: tuple[str, ...], request_suspend: bool, reason: str | None,
           passphrase_file: Path | None, dry_run: bool, yes: bool) -> None:
    """Before crossing a border: check that the vault is held elsewhere, then remove every
    local secret dvault knows of (identity files, pins, checkpoints, the config, a local
    vault file, exports it wrote), each overwritten first. Shown, then asked once.

    A vault on a server must be reachable and be the vault your identity pinned. A vault
    file on this laptop needs --copy PATH (a copy off this laptop, checked to hold
    everything this one holds; --copy-to PATH makes one first) or --copy-held-by-lead (you
    type its id back). Without that, nothing is removed. On return: dvault keygen, and
    dvault pin add with the lead's pin line; the lead enrols the new identity (dvault
    user add).

    Example: dvault travel --request-suspend --reason "Istanbul, back 12 May"
    """
    inv = L.inventory([identity] if identity else [], [vault_url] if vault_url else [])
    found = L.survey(inv.targets)
    for n in inv.notes:
        warn(f"dvault: warning: {n}")
    if request_suspend and not inv.servers:
        raise Refused("--request-suspend needs the vault on a database server: a vault file on this laptop goes "
                      "with it (ask the lead yourself: dvault user remove YOUR-NAME)")
    if copy_to is not None:
        copy_places += (_copy_to(found, copy_to, dry_run),)
    for line in _evidence(inv, found, copy_places, held_by_lead, vault_ids):
        click.echo(line, err=True)
    _show(found)
    if dry_run:
        note("dry run: nothing was removed")
        return
    if not any(f.removable for f in found):
        note("nothing to remove")
        return
    if not yes:
        confirm(f"Remove these {sum(f.removable for f in found)} file(s) now?")
    if request_suspend:
        _request_suspend(inv.servers[0], identity, passphrase_file, reason)
    _remove(inv)


def _remove(inv: L.Inventory) -> None:
    """Remove what the survey found; exit 1, as panic does, if anything is left: a file
    refused at the survey (another account's, say), one whose removal failed, a file a
    removed link named, or what a list that was not followed names."""
    for line in L.end_shells():
        note(f"ended {line}")
    found = L.survey(inv.targets + L.marks())  # again: a shell that closed changed its journal files
    done = L.remove(found, inv)
    L.tidy(L.own_folders())
    removed = [r for r in done if r.ok]
    for r in removed:
        click.echo(f"removed  {r.found.target.kind:<18} {r.found.target.path}")
    left = L.left(found, done)
    for t, why in left:
        warn(f"dvault: warning: left {t.kind} {t.path}: {why}")
    note(f"{len(removed)} file(s) removed" + (f", {len(left)} left" if left else ""))
    if left:
        raise click.ClickException("some files were left (above): remove them yourself")
    if inv.notes:
        raise click.ClickException("a list dvault keeps was not followed (above): what it names may still be here")


def _show(found: list[L.Found]) -> None:
    gone = [f for f in found if f.removable]
    if gone:
        click.echo("to be overwritten and removed:", err=True)
        for f in gone:
            extra = f"  [{f.detail}]" if f.state == "link" else ""
            click.echo(f"  {f.target.kind:<18} {f.target.path}  ({f.target.why}){extra}", err=True)
    for f in (f for f in found if f.state == "left"):
        warn(f"dvault: warning: left in place: {f.target.kind} {f.target.path}: {f.detail}")
    home = Path.home()
    others = [p for p in (".pgpass", ".bash_history", ".zsh_history", ".python_history", ".sqlite_history")
              if (home / p).exists()]
    if others:
        warn(f"not dvault's, not removed (check them yourself): {', '.join(str(home / p) for p in others)}")


# -- is the vault held elsewhere? ------------------------------------------------------------------------
def _evidence(inv: L.Inventory, found: list[L.Found], copy_places: tuple[str, ...], held: bool,
              typed: tuple[str, ...]) -> list[str]:
    ids = {_id_text(t) for t in typed}
    pinned = _pinned(inv)
    lines = [_reachable(url, pinned, ids) for url in inv.servers]
    files = [f.target.path for f in found if f.target.kind == L.VAULT and f.state == "present" and f.size > 0]
    removing = [f.target.path for f in found if f.removable]
    lines += [_held_elsewhere(p, copy_places, held, ids, removing) for p in files]
    if not inv.servers and not files:
        lines.append("no vault here: no vault file on this laptop, and none named by --vault, DVAULT_URL or the config "
                     "file (your identity is replaced by re-enrolment after the trip)")
    for f in found:
        if f.target.kind == L.CHECKPOINTS and f.removable:
            warn(f"dvault: warning: {f.target.path} is a lead's: only the lead's identity enrols and revokes users; "
                 "keep an encrypted backup of it elsewhere (threat model 6.3)")
    return lines


def _pinned(inv: L.Inventory) -> set[str]:
    from vault.pins import known
    out: set[str] = set()
    for ident in inv.identities:
        try:
            out |= known(pins_path(ident))
        except vault.VaultError:
            continue
    return out


def _reachable(url: str, pinned: set[str], typed: set[str]) -> str:
    try:
        f = CP.facts(url)
    except vault.VaultError as e:
        raise Refused(f"cannot confirm that the vault at {shown_url(url)} is reachable ({e})") from None
    if f.vault_id not in pinned | typed:
        raise Refused(f"the vault at {shown_url(url)} is vault {f.vault_id}, which no identity here has pinned: if the "
                      f"lead confirms it is yours, give --vault-id {f.vault_id}")
    return f"reachable: vault {f.vault_id} at {shown_url(url)}, {f.records} records, log entry {f.seq} ({_when(f)})"


def _held_elsewhere(path: Path, copy_places: tuple[str, ...], held: bool, typed: set[str],
                    removing: list[Path]) -> str:
    try:
        mine = CP.facts(str(path))
    except vault.VaultError as e:
        raise Refused(f"cannot read {path} as a vault ({e}): travel does not remove a vault file it cannot check; "
                      "move or remove it yourself") from None
    for place in copy_places:
        try:
            theirs = CP.facts(place)
        except vault.VaultError as e:
            raise Refused(f"cannot read the copy {place} ({e})") from None
        if theirs.vault_id == mine.vault_id:
            _not_removed_itself(place, removing)
            try:
                line = CP.check_copy(str(path), place)
            except vault.VaultError as e:
                raise Refused(str(e)) from None
            _same_disk(path, place)
            return f"held elsewhere: {line}"
    if copy_places:
        raise Refused(f"no copy given is of vault {mine.vault_id}, the vault file {path}")
    if held:
        given = typed or {_id_text(prompt_line(f"Vault file {path} is vault {mine.vault_id}. Type its id to confirm "
                                               "that the lead holds a copy of it", "--vault-id ID"))}
        if mine.vault_id not in given:
            raise Refused(f"the id typed is not that of vault {mine.vault_id} ({path})")
        return (f"held by the lead (you confirmed): vault {mine.vault_id}, {mine.records} records; this file's log "
                f"ends at entry {mine.seq} ({_when(mine)}): what was written after the lead's copy was made is lost")
    raise Refused(f"{path} is vault {mine.vault_id} ({mine.records} records, last written {_when(mine)}), and travel "
                  "would remove it: first make sure a copy is held elsewhere, then give --copy PATH (a copy off this "
                  "laptop, checked here) or --copy-held-by-lead (you then type the vault id)")


def _copy_to(found: list[L.Found], dest: Path, dry_run: bool) -> str:
    """--copy-to: the one vault file here, copied to ``dest`` (a dry run only names it)."""
    files = [f.target.path for f in found if f.target.kind == L.VAULT and f.state == "present" and f.size > 0]
    if len(files) != 1:
        raise Refused(f"--copy-to copies the vault file on this laptop, and there are {len(files)}: give --copy for "
                      "each instead")
    if dry_run:
        raise Refused(f"--copy-to with --dry-run: make the copy ({dest}) without --dry-run, or check one with --copy")
    try:
        CP.backup(str(files[0]), dest)
    except vault.VaultError as e:
        raise Refused(str(e)) from None
    note(f"copied {files[0]} to {dest}")
    return str(dest)


def _not_removed_itself(place: str, removing: list[Path]) -> None:
    path = L.sqlite_path(place)
    if path is None:
        return
    for r in removing:
        if os.path.abspath(path) == str(r) or (path.exists() and r.exists() and os.path.samefile(path, r)):
            raise Refused(f"the copy {path} is itself one of the files travel removes")


def _same_disk(path: Path, place: str) -> None:
    copy = L.sqlite_path(place)
    try:
        same = copy is not None and os.stat(copy).st_dev == os.stat(path).st_dev
    except OSError:
        return
    if same:
        warn(f"dvault: warning: the copy {copy} is on the same disk as {path}: it stays on this laptop and crosses the "
             "border with you; hand it to the lead or keep it on a drive that stays behind")


def _id_text(text: str) -> str:
    return "".join(c for c in text.lower() if c in "0123456789abcdef")


def _when(f: CP.Facts) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(f.at_ms / 1000)) if f.at_ms else "never"


def _request_suspend(url: str, identity: Path | None, passphrase_file: Path | None, reason: str | None) -> None:
    """Write the audited request (docs/format.md 13a): signed by the traveller, its reason
    sealed to the lead, who sees it in dvault requests."""
    from vault.identity import default_path
    v = open_vault(url, identity_path(identity) or default_path(), passphrase_file)
    with v:
        if v.user is None:
            raise Refused("a suspension request is made with your identity, not the recovery passphrase")
        set_reason(v, reason)
        # The one write this needs that Vault has no public method for: an entry of its own
        # action, signed by the opener like every entry, in its own transaction.
        v._audit(SUSPEND_ACTION, "", {"user": v.user.user_id})
        click.echo(f"asked the lead to suspend you ({printable(v.user.name)}, {v.user.user_id}) in vault {v.id}; they "
                   "see it in dvault requests", err=True)


# -- panic -----------------------------------------------------------------------------------------------
@click.command()
@click.option("--verbose", "-v", is_flag=True, help="List every file removed.")
def panic(verbose: bool) -> None:
    """Remove every local secret of dvault now: no question, no passphrase. Ends any
    running dvault shell, then overwrites and removes identity files, pins, checkpoints,
    the config, local vault files and exports dvault wrote (never through a symbolic
    link). What SSDs, swap, backups and shell history may still hold: docs/threat-model.md
    3.9. Exit 1 if anything was left (each named).

    Example: dvault panic
    """
    from .panic import run_panic
    code = run_panic(verbose)
    if code:
        raise SystemExit(code)


COMMANDS = [travel, panic]
