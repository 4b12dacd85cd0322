"""``dvault shell``: one unlock, many lookups, for a long day at the registration desk."""

from __future__ import annotations

import cmd
import shlex
from typing import Any

import click

import vault

from .common import emit, set_reason, unlock, vault_options


class VaultShell(cmd.Cmd):
    intro = "dvault shell: find NAME|EMAIL|PHONE|PASSPORT VALUE, show PSEUDONYM, list FIELDS, reason TEXT, quit"
    prompt = "dvault> "

    def __init__(self, v: vault.Vault) -> None:
        super().__init__()
        self.v = v

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
def shell(**kw: Any) -> None:
    """Unlock once, then look people up all day (find, show, list; 'quit' to lock).

    Example: dvault shell --reason "registration desk, day 1"
    """
    reason = kw.pop("reason")
    with unlock(kw) as v:
        set_reason(v, reason)
        VaultShell(v).cmdloop()


COMMANDS = [shell]
