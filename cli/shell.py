"""``dvault shell``: one unlock, many lookups, for a long day at the registration desk.

An unattended desk is the risk a long session brings: after an idle time (5 minutes
unless ``--idle-lock`` or ``shell_idle_lock`` in the config file says otherwise) the shell
locks. The lock closes the vault handle (its keys are dropped), clears a terminal screen
and its scrollback (the last lookup's names and numbers), and asks for the passphrase
again; end of input there (Ctrl-D) ends the shell. A passphrase file or variable given at
the start is not used again: whoever sits down at the desk must know the passphrase.
"""

from __future__ import annotations

import cmd
import re
import shlex
import signal
import sys
from types import FrameType
from typing import Any

import click

import vault

from .common import config, emit, open_vault, open_vault_as, set_reason, vault_options, warn
from .travel import ends_on_panic

#: The idle time before the shell locks, unless configured: long enough not to lock while
#: the person at the desk spells a name, short enough that a desk left for a coffee is locked.
DEFAULT_IDLE_LOCK = "5m"
_DURATION = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([smh]?)\s*")


class Idle(Exception):
    """Raised (by the idle timer) out of the shell's wait for a line."""


def idle_seconds(text: str) -> float:
    """``90s``, ``5m``, ``1h`` or a bare number of minutes, between 1 second and 24 hours."""
    m = _DURATION.fullmatch(text or "")
    if m is None:
        raise click.UsageError("the idle lock is a duration such as 90s, 5m or 1h")
    seconds = float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "": 60}[m.group(2)]
    if not 1 <= seconds <= 86400:
        raise click.UsageError("the idle lock must be between 1 second and 24 hours")
    return seconds


class VaultShell(cmd.Cmd):
    intro = "dvault shell: find NAME|EMAIL|PHONE|PASSPORT VALUE, show PSEUDONYM, list FIELDS, reason TEXT, quit"
    prompt = "dvault> "

    def __init__(self, v: vault.Vault, idle: float | None = None, reason: str = "") -> None:
        super().__init__()
        self.v = v
        self.idle = idle  # seconds; None: no timer (a platform without setitimer, or tests)
        self.reason = reason

    # The idle timer runs only while the shell waits for a line: armed before each prompt,
    # disarmed as soon as a line is read, so it never fires inside a vault operation.
    def preloop(self) -> None:
        self._arm()

    def precmd(self, line: str) -> str:
        self._disarm()
        return line

    def postcmd(self, stop: bool, line: str) -> bool:
        if not stop:
            self._arm()
        return stop

    def _arm(self) -> None:
        if self.idle is not None:
            _Timer.armed = True
            signal.setitimer(signal.ITIMER_REAL, self.idle)

    def _disarm(self) -> None:
        if self.idle is not None:
            _Timer.armed = False  # first: a signal already on its way then raises nothing
            signal.setitimer(signal.ITIMER_REAL, 0)

    def onecmd(self, line: str) -> bool:
        """Every line's errors end here, as one line, and the session (and its unlock) goes on.
        Only a VaultError's own message is shown: others may quote what was typed."""
        try:
            return super().onecmd(line)
        except vault.VaultError as e:
            click.echo(f"dvault: error: {e}", err=True)
        except UnicodeError:
            click.echo("dvault: error: that line is not valid UTF-8 text", err=True)
        except ValueError:  # shlex: unbalanced quotes
            click.echo("dvault: error: cannot parse that line (unbalanced quotes?)", err=True)
        except Exception as e:  # noqa: BLE001 - keep the session; say what kind of failure only
            click.echo(f"dvault: error: internal error ({type(e).__name__})", err=True)
        return False

    def do_find(self, arg: str) -> None:
        """find email|name|phone|passport VALUE   (exact match)"""
        parts = shlex.split(arg) if arg else []
        keys = {"email": "email", "name": "legal_name", "phone": "phone", "passport": "passport_number"}
        if len(parts) < 2 or parts[0] not in keys:
            click.echo("usage: find email|name|phone|passport VALUE", err=True)
            return
        field, value = keys[parts[0]], " ".join(parts[1:])
        shown = [n for n in ("badge_name", "legal_name", "email", "phone") if n in self.v.readable_fields]
        recs = self.v.find(fields=shown, **{field: value})
        purpose = "badge" if "badge" in self.v.purposes else None
        rows = [{"pseudonym": self.v.pseudonym(r.id, purpose) if purpose else "-", **dict(r)} for r in recs]
        emit(rows, ["pseudonym"] + shown, False)

    def do_show(self, arg: str) -> None:
        """show PSEUDONYM"""
        rec = self.v.resolve(arg.strip())
        emit([{"field": n, "value": rec[n]} for n in rec], ["field", "value"], False)

    def do_list(self, arg: str) -> None:
        """list FIELD[,FIELD...]"""
        names = [n for n in arg.replace(",", " ").split() if n]
        if not names:
            click.echo("usage: list FIELD[,FIELD...]", err=True)
            return
        purpose = "badge" if "badge" in self.v.purposes else None
        emit(self.v.rows(names, purpose=purpose), (["pseudonym"] if purpose else []) + names, False)

    def default(self, line: str) -> None:
        """Never quote the line back: it may hold a name, and control characters would reach
        the terminal as they are."""
        click.echo("dvault: error: unknown command (find, show, list, reason, quit; help for more)", err=True)

    def do_help(self, arg: str) -> None:
        """help [COMMAND]   (the commands, or how to use one)"""
        name = arg.strip()
        if name and not (name.isidentifier() and callable(getattr(self, f"do_{name}", None))):
            # cmd.Cmd would print "*** No help on <the line>": the same echo default() refuses
            click.echo("dvault: error: no such command (find, show, list, reason, quit)", err=True)
            return
        super().do_help(name)

    def do_reason(self, arg: str) -> None:
        """reason TEXT   (recorded with every following access; a session always has one)"""
        if not arg.strip():
            click.echo("usage: reason TEXT (the session keeps its current reason)", err=True)
            return
        self.v.set_reason(arg.strip())
        self.reason = arg.strip()

    def do_quit(self, _arg: str) -> bool:
        """quit"""
        return True

    do_exit = do_quit
    do_EOF = do_quit

    def emptyline(self) -> bool:
        return False


@click.command()
@vault_options
@click.option("--reason", help="Reason recorded for this session's accesses (prompted if missing).")
@click.option("--idle-lock", "idle_lock", metavar="DURATION",
              help=f"Lock after this long without input: 90s, 5m, 1h (default {DEFAULT_IDLE_LOCK}, or "
                   "shell_idle_lock in the config file). The lock closes the vault and asks for the "
                   "passphrase again.")
@ends_on_panic
def shell(**kw: Any) -> None:
    """Unlock once, then look people up all day (find, show, list; 'quit' to lock).

    After the idle time the shell locks: the vault is closed, the screen cleared, and the
    passphrase asked again (Ctrl-D there ends the shell). dvault panic ends it (exit 143).

    Example: dvault shell --reason "registration desk, day 1" --idle-lock 5m
    """
    idle = idle_seconds(kw.pop("idle_lock") or config().get("shell_idle_lock") or DEFAULT_IDLE_LOCK)
    url, ident, recovery = kw["vault_url"], kw["identity"], kw["recovery"]
    v = open_vault(url, ident, kw["passphrase_file"], recovery)
    timer = hasattr(signal, "setitimer")  # POSIX; elsewhere the shell does not lock (docs/guide.md)
    old = signal.signal(signal.SIGALRM, _on_idle) if timer else None
    try:
        sh = VaultShell(v, idle if timer else None)
        with v:
            sh.reason = set_reason(v, kw["reason"])
            if _serve(sh, sh.intro):
                return
        sh.intro = None  # cmd.Cmd shows self.intro again on every cmdloop()
        while True:  # locked: the handle above is closed
            _locked(idle)
            try:  # never the passphrase file or a variable (one given but not read stays): a prompt
                v = open_vault_as(url, ident, None, recovery, ask=True)[0]
            except (click.exceptions.Abort, click.UsageError):  # Ctrl-D, or nothing typed
                warn("dvault: the shell ended while locked")
                return
            with v:
                v.set_reason(sh.reason)
                sh.v = v
                if _serve(sh, None):
                    return
    finally:
        if timer:
            _Timer.armed = False
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)


class _Timer:
    armed = False  # the handler raises only while the shell waits for a line


def _on_idle(_signum: int, _frame: FrameType | None) -> None:
    if _Timer.armed:
        _Timer.armed = False
        raise Idle()


def _serve(sh: VaultShell, intro: str | None) -> bool:
    """Run the shell until quit (True) or the idle lock (False)."""
    try:
        sh.cmdloop(intro)
        return True
    except Idle:
        return False


def _locked(idle: float) -> None:
    """Say so, and take the last lookups off a terminal's screen and scrollback."""
    if sys.stdout.isatty():
        sys.stdout.write("\x1b[H\x1b[2J\x1b[3J")
        sys.stdout.flush()
    when = f"{idle / 60:g} min" if idle >= 60 else f"{idle:g} s"
    warn(f"dvault: locked after {when} without input: the vault is closed. Enter the passphrase to go on "
         "(Ctrl-D ends the shell).")


COMMANDS = [shell]
