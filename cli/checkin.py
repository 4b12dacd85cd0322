"""`dvault checkin`: arrival at the registration desk, typed or scanned from a badge.

A USB QR scanner types like a keyboard: the badge pseudonym, then Enter. So the command
takes pseudonyms as arguments, or, with none, one per line from a prompt (a terminal) or
from standard input (a pipe), until an empty line or end of input; ``dvault shell`` has
the same as its ``checkin`` command. Each arrival is the library's own update of the
``checked_in`` field (one audited ``update`` entry, with the time); the summary counts
and names no one.
"""

from __future__ import annotations

import datetime as dt
import sys
from typing import Any

import click

import vault

from .common import check_fields, json_line, need_stdout, printable, reason_option, set_reason, unlock, vault_options

DEFAULT_FIELD = "checked_in"


def checkin_field(v: vault.Vault, name: str) -> str:
    """The field arrivals go to: a date (the day) or bool field this role can read and
    write. A vault whose schema predates check-in has none: say so and how to name one."""
    if name not in v.schema.fields:
        if name == DEFAULT_FIELD:
            raise click.UsageError(f"this vault's schema has no field {DEFAULT_FIELD!r} (a vault made before "
                                   "check-in existed): name a date field of logistics with --field")
        check_fields(v.schema, [name])
    f = v.schema.fields[name]
    if f.type not in ("date", "bool"):
        raise click.UsageError(f"field {name!r} is a {f.type} field: check-in needs a date or bool field")
    if name not in v.readable_fields or name not in v.writable_fields:
        raise vault.AccessDenied(f"your role cannot read and write field {name!r}")
    return name


def check_in(v: vault.Vault, pseudonym: str, field: str) -> dict[str, Any]:
    """Record one arrival. Returns what to show: the badge name, to compare with the person
    in front of the desk, and whether this scan recorded the arrival or found it recorded
    already (then nothing is written)."""
    text = pseudonym.strip()
    shown = [n for n in ("badge_name",) if n in v.readable_fields]
    rec = v.resolve(text, [*shown, field])
    before = rec.get(field)
    out: dict[str, Any] = {"pseudonym": text.upper(), "badge_name": rec.get("badge_name") if shown else None}
    if before not in (None, False):
        return {**out, "status": "already", "date": before.isoformat() if isinstance(before, dt.date) else None}
    today = dt.date.today()
    v.update(rec.id, {field: today if v.schema.fields[field].type == "date" else True})
    return {**out, "status": "checked_in", "date": today.isoformat()}


def shown(result: dict[str, Any]) -> str:
    """One line for the desk's screen."""
    who = result["pseudonym"] + (f"  {printable(str(result['badge_name']))}" if result["badge_name"] else "")
    if result["status"] == "already":
        return f"already checked in ({result['date'] or 'earlier'}): {who}"
    return f"checked in: {who}"


def summary(v: vault.Vault, field: str) -> dict[str, int]:
    """Counts only: checked in, not yet, total (one audited read of that field)."""
    rows = v.rows([field])
    done = sum(1 for r in rows if r.get(field) not in (None, False))
    return {"checked_in": done, "not_yet": len(rows) - done, "total": len(rows)}


def _lines() -> Any:
    """Pseudonyms from a prompt (a terminal: a person or a scanner typing) or stdin."""
    tty = sys.stdin is not None and sys.stdin.isatty()
    if tty:
        click.echo("Scan or type badges, one per line; an empty line or Ctrl-D ends.", err=True)
    while True:
        try:
            line = click.prompt("badge", default="", show_default=False, err=True) if tty else sys.stdin.readline()
        except click.exceptions.Abort:  # Ctrl-D at the prompt
            click.echo(err=True)
            return
        if not line or not line.strip():
            return
        yield line.strip()


@click.command()
@click.argument("pseudonyms", nargs=-1, metavar="[BA-...]...")
@click.option("--summary", "show_summary", is_flag=True, help="Only counts: checked in, not yet, total.")
@click.option("--field", default=DEFAULT_FIELD, show_default=True, help="The date field arrivals go to.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines (the summary: one object).")
@vault_options
@reason_option
def checkin(pseudonyms: tuple[str, ...], show_summary: bool, field: str, as_json: bool, **kw: Any) -> None:
    """Record arrivals at the desk by badge pseudonym: as arguments, or one per line
    (typed, or read from a badge's QR code by a USB scanner, which types it and Enter)
    until an empty line. Shows each badge name; a second scan says "already". With
    --summary, prints how many have checked in, not yet, and the total: no names.

    Example: dvault checkin --reason "registration desk, day 1"
    """
    if show_summary and pseudonyms:
        raise click.UsageError("--summary takes no pseudonyms")
    need_stdout("the check-in results")
    if not show_summary and not pseudonyms and (sys.stdin is None or sys.stdin.closed):  # `dvault checkin <&-`
        raise click.UsageError("no input for: badge pseudonyms; standard input is closed (give them as arguments)")
    with unlock(kw) as v:
        name = checkin_field(v, field)
        set_reason(v, kw["reason"])
        if show_summary:
            counts = summary(v, name)
            click.echo(json_line(counts, sort_keys=True) if as_json else
                       f"checked in {counts['checked_in']}, not yet {counts['not_yet']}, total {counts['total']}")
            return
        failed = 0
        for p in pseudonyms or _lines():
            try:
                result = check_in(v, p, name)
            except (vault.NotFound, ValueError) as e:  # a misread or unknown badge (PseudonymError): say so, go on
                failed += 1
                click.echo(f"dvault: error: {e}", err=True)
                continue
            click.echo(json_line(result, sort_keys=True) if as_json else shown(result))
    if failed:
        raise vault.NotFound(f"{failed} badge(s) not checked in (see above)")


COMMANDS = [checkin]
