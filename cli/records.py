"""Staff commands: add, show, find, list, edit, shred, reveal. Each is one library call."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import click

import vault

from .common import (
    answered,
    cell,
    check_fields,
    confirm,
    emit,
    fields_arg,
    need_stdout,
    note,
    printable,
    prompt_line,
    reason_option,
    set_reason,
    unlock,
    vault_options,
)

if TYPE_CHECKING:
    from vault.schema import Field

HANDLE = "badge"  # the pseudonym staff use to name a participant in the CLI


def _handle(v: vault.Vault, rid: str) -> str:
    purpose = HANDLE if HANDLE in v.purposes else next(iter(v.purposes), None)
    return v.pseudonym(rid, purpose) if purpose else "-"


def _hint(f: Field) -> str:
    if f.type == "enum":
        return "/".join(f.values)
    if f.type == "list":
        return "comma-separated" + (f": {'/'.join(f.values)}" if f.values else "")
    return {"date": "YYYY-MM-DD", "bool": "yes/no", "integer": "number"}.get(f.type, "")


def _ask(f: Field, current: Any = None, editing: bool = False) -> Any:
    """Prompt until the value is valid. Empty keeps (or skips); '-' clears when editing."""
    label = f.name + (f" [{_hint(f)}]" if _hint(f) else "")
    if editing and current is not None:
        label += f" (now: {printable(cell(current))})"
    while True:
        text = prompt_line(label, "an answer for each field on standard input", default="", show_default=False)
        if not text.strip():
            return ... if editing else None
        if editing and text.strip() == "-":
            return None
        try:
            value = f.parse_text(text)
            f.encode(value)
            return value
        except vault.ValidationError as e:
            click.echo(f"dvault: error: {e}", err=True)


@click.command()
@vault_options
@reason_option
def add(**kw: Any) -> None:
    """Register a participant, field by field (empty answer = skip). Fields your role may
    write but not read (staff: identity, risk) are sealed to the lead.

    Example: dvault add --reason "registration desk"
    """
    with unlock(kw) as v:
        set_reason(v, kw["reason"])
        v.require_writable("add")  # a refusal before the first question, not after the last
        writable = [v.schema.fields[n] for n in v.writable_fields]
        values = {}
        for f in writable:
            value = _ask(f)
            if value is not None:
                values[f.name] = value
        if not values:
            raise click.UsageError("nothing entered; no record added")
        confirm(f"Add this participant ({len(values)} fields)?", option="y on standard input", default=True)
        rid = v.add(values)
        click.echo(_handle(v, rid))


@click.command()
@click.argument("pseudonym")
@click.option("--fields", help="Comma-separated fields to show (default: all you may read).")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
@vault_options
@reason_option
def show(pseudonym: str, fields: str | None, as_json: bool, **kw: Any) -> None:
    """Show one participant by pseudonym (any purpose you hold).

    Example: dvault show BA-7KQ4-M2XP-9AW --fields badge_name,email --reason "badge reprint"
    """
    need_stdout("the record")
    with unlock(kw) as v:
        names = fields_arg(fields, v.schema)
        set_reason(v, kw["reason"])
        rec = v.resolve(pseudonym, names)
        rows = [{"field": n, "value": rec[n]} for n in v.schema.fields if n in rec]
        if as_json:
            emit([{**{n: rec[n] for n in rec}}], list(rec), True)
        else:
            emit(rows, ["field", "value"], False)


#: find's options, the fields they search, and what their prompt asks for
_TERMS = (("legal_name", "Legal name"), ("email", "E-mail address"), ("phone", "Phone number"),
          ("passport_number", "Passport number"))
ASK = "?"  # the value click gives an option typed without one


def _ask_terms(given: dict[str, str | None]) -> dict[str, str]:
    """Each option typed without a value, asked for now: after the passphrase prompt, so
    that whoever types the passphrase at the first prompt never shows it on screen. The
    term is shown as typed (not hidden): the matches it finds are printed on the same
    screen, so hiding it protects nothing, while a mistyped address typed blind costs a
    wrong search in the audit log. What the prompt keeps out of is shell history."""
    out: dict[str, str] = {}
    for name, label in _TERMS:
        value = given.get(name)
        if value is None:
            continue
        if value == ASK:
            option = {"legal_name": "--name", "passport_number": "--passport"}.get(name, f"--{name}")
            value = prompt_line(label, f"{option} VALUE").strip()
            if not value:
                raise click.UsageError(f"no {label.lower()} given")
        out[name] = value
    return out


@click.command()
@click.option("--name", "legal_name", is_flag=False, flag_value="?", help="Legal name (exact, normalised).")
@click.option("--email", is_flag=False, flag_value="?", help="E-mail address.")
@click.option("--phone", is_flag=False, flag_value="?", help="Phone number (any formatting).")
@click.option("--passport", "passport_number", is_flag=False, flag_value="?", help="Passport number.")
@click.option("--tokens", is_flag=True, help="Match name parts: --name Haddad finds Amira Haddad.")
@click.option("--fields", help="Comma-separated fields to show.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table.")
@click.option("--pseudonyms-only", is_flag=True, help="Print only the matches' pseudonyms, one per line.")
@vault_options
@reason_option
def find(legal_name: str | None, email: str | None, phone: str | None, passport_number: str | None, tokens: bool,
         fields: str | None, as_json: bool, pseudonyms_only: bool, **kw: Any) -> None:
    """Find participants by exact field values (AND). Give an option without a value to be
    prompted for it (after the passphrase), which keeps the term out of your shell history.

    Example: dvault find --email --reason "is she registered?"
    """
    given = {"legal_name": legal_name, "email": email, "phone": phone, "passport_number": passport_number}
    if all(val is None for val in given.values()):
        raise click.UsageError("give at least one of --name, --email, --phone, --passport")
    need_stdout("the matches")
    if tokens and {k for k, val in given.items() if val is not None} != {"legal_name"}:
        raise click.UsageError("--tokens works with --name only")
    with unlock(kw) as v:
        shown = fields_arg(fields, v.schema) or [n for n in ("badge_name", "legal_name", "email", "phone")
                                                 if n in v.readable_fields]
        criteria = _ask_terms(given)
        set_reason(v, kw["reason"])
        if tokens:
            recs = v.find_tokens(fields=shown, legal_name=criteria["legal_name"])
        else:
            recs = v.find(fields=shown, **criteria)
        rows = [{"pseudonym": _handle(v, r.id), **dict(r)} for r in recs]
        if pseudonyms_only:
            for r in rows:
                click.echo(r["pseudonym"])
            if not rows:
                raise vault.NotFound("no matching participant")
            return
        emit(rows, ["pseudonym"] + shown, as_json)


@click.command(name="list")
@click.option("--fields", required=True, help="Comma-separated fields to list.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table.")
@vault_options
@reason_option
def list_(fields: str, as_json: bool, **kw: Any) -> None:
    """List every participant (only the fields you ask for).

    Example: dvault list --fields badge_name,dietary --reason "catering numbers"
    """
    need_stdout("the list")
    with unlock(kw) as v:
        names = fields_arg(fields, v.schema)
        assert names is not None
        set_reason(v, kw["reason"])
        purpose = HANDLE if HANDLE in v.purposes else None
        emit(v.rows(names, purpose=purpose), (["pseudonym"] if purpose else []) + names, as_json)


@click.command()
@click.argument("pseudonym")
@click.option("--field", "only", multiple=True, help="Edit only this field (repeatable).")
@vault_options
@reason_option
def edit(pseudonym: str, only: tuple[str, ...], **kw: Any) -> None:
    """Change a participant's fields interactively (Enter keeps, '-' clears).

    Example: dvault edit BA-7KQ4-M2XP-9AW --field dietary --reason "dietary update by e-mail"
    """
    with unlock(kw) as v:
        names = check_fields(v.schema, only) if only else v.readable_fields
        set_reason(v, kw["reason"])
        rec = v.resolve(pseudonym, names)
        changes: dict[str, Any] = {}
        for n in names:
            value = _ask(v.schema.field(n), rec.get(n), editing=True)
            if value is not ...:
                changes[n] = value
        if not changes:
            note("nothing changed")
            return
        v.update(rec.id, changes)
        note(f"updated {len(changes)} field(s)")


@click.command()
@click.argument("pseudonym")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@vault_options
@reason_option
def shred(pseudonym: str, yes: bool, **kw: Any) -> None:
    """Crypto-shred one participant's record (cannot be undone).

    Example: dvault shred BA-7KQ4-M2XP-9AW --reason "retention period over"
    """
    with unlock(kw) as v:
        set_reason(v, kw["reason"])
        rec = v.resolve(pseudonym, [])
        if not yes:
            with answered("no answer to: type the pseudonym again (no terminal? check first, then give --yes)"):
                typed = str(click.prompt("Type the pseudonym again to shred this record", err=True))
            if typed.replace(" ", "").upper() != pseudonym.replace(" ", "").upper():
                raise click.UsageError("pseudonym did not match; nothing shredded")
        v.delete(rec.id)
        note("shredded")


@click.group()
def reveal() -> None:
    """Break-glass: ask the lead for one field outside your role, then read it once.

    Example: dvault reveal request BA-7KQ4-M2XP-9AW legal_name --reason "hospital admission"
    """


@reveal.command("request")
@click.argument("pseudonym")
@click.argument("field")
@vault_options
@reason_option
def reveal_request(pseudonym: str, field: str, **kw: Any) -> None:
    """Ask for one field of one participant; the reason goes to the lead only.

    Example: dvault reveal request BA-7KQ4-M2XP-9AW legal_name --reason "visa letter"
    """
    with unlock(kw) as v:
        check_fields(v.schema, [field])
        reason = kw["reason"] or prompt_line("Reason (the lead will read it)", "--reason")
        rec = v.resolve(pseudonym, [])
        click.echo(v.request_reveal(rec.id, field, reason))


@reveal.command("show")
@click.argument("request_id")
@vault_options
def reveal_show(request_id: str, **kw: Any) -> None:
    """Show an approved field once (the grant is destroyed as it is read).

    Example: dvault reveal show 3f2a9c1e00aa11bb
    """
    from vault.breakglass import known_form
    known_form(request_id)  # before the passphrase is asked for; and never echoed as typed
    need_stdout("the field (its grant is destroyed as it is read)")
    with unlock(kw) as v:
        value = v.reveal(request_id)
        click.echo(value.isoformat() if isinstance(value, dt.date) else printable(str(value), lines=True))


COMMANDS = [add, show, find, list_, edit, shred, reveal]
