"""Data lifecycle: purge what is past retention, keep one record longer, and a person's own
data (subject export and erase). Each command opens the vault, calls one library function
(vault.retention, vault.subject) and reports counts; none prints a value except the
subject export, and that only into the files it writes."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import click

import vault

from .common import confirm, note, open_vault_as, reason_option, set_reason, unlock, vault_options


@click.command()
@click.option("--expired", is_flag=True, help="Shred the records past the schema's retention (required: says what "
                                              "is purged).")
@click.option("--yes", is_flag=True, help="Shred them. Without it: a dry run (how many, by cause; no names).")
@click.option("--as-of", "as_of", metavar="YYYY-MM-DD",
              help="Dry run only: count what will have expired on this day (planning ahead).")
@click.option("--json", "as_json", is_flag=True, help="The counts as JSON.")
@vault_options
@reason_option
def purge(expired: bool, yes: bool, as_of: str | None, as_json: bool, **kw: Any) -> None:
    """Crypto-shred every record past retention (the schema's [retention] rule, or a record's
    own override) in one audited operation. Without --yes it only counts them.

    Example: dvault purge --expired   (then: dvault purge --expired --yes)
    """
    if not expired:
        raise click.UsageError("say what to purge: dvault purge --expired")
    if as_of is not None and yes:
        raise click.UsageError("--as-of is for a dry run: a purge shreds what has expired today")
    day = _date_option("--as-of", as_of)
    with unlock(kw) as v:
        set_reason(v, kw["reason"])
        report = v.purge_expired(dry_run=not yes, today=day)
    _report(report.as_dict(), as_json)


def _report(r: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(r, sort_keys=True))
        return
    causes = ", ".join(f"{n} by {_CAUSE[c]}" for c, n in r["by"].items()) or "none"
    verb = "would be shredded (dry run; --yes shreds them)" if r["dry_run"] else "shredded"
    click.echo(f"{r['count']} of {r['total']} record(s) past retention on {r['today']} {verb}: {causes}")
    if r["undated"]:
        click.echo(f"{r['undated']} record(s) have no date to count retention from (kept)")


def _date_option(name: str, text: str | None) -> dt.date | None:
    if text is None:
        return None
    t = text.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", t):
            return dt.date.fromisoformat(t)
    except ValueError:
        pass
    raise click.UsageError(f"{name} must be a date, YYYY-MM-DD")


_CAUSE = {"after": "the rule's date field", "event_end": "the event's end", "override": "their own override"}


@click.command("retain")
@click.argument("pseudonym")
@click.option("--until", "until_text", metavar="YYYY-MM-DD", help="Keep this record until this day.")
@click.option("--clear", is_flag=True, help="Remove the record's override: the schema's rule applies again.")
@vault_options
@reason_option
def retain(pseudonym: str, until_text: str | None, clear: bool, **kw: Any) -> None:
    """Keep one participant's record until a date whatever the retention rule says (they
    agreed to be invited again), or --clear it. Lead only; signed and audited.

    Example: dvault retain BA-7KQ4-M2XP-9AW --until 2028-06-30 --reason "consented to next year's invitation"
    """
    if clear == (until_text is not None):
        raise click.UsageError("give --until YYYY-MM-DD or --clear")
    until = _date_option("--until", until_text)
    with unlock(kw) as v:
        set_reason(v, kw["reason"])
        rec = v.resolve(pseudonym, [])
        v.set_retention(rec.id, until)
    note("retention override removed" if until is None else f"kept until {until.isoformat()}")


@click.group()
def subject() -> None:
    """A person's own data: everything held about one participant, or its erasure.

    Example: dvault subject export BA-7KQ4-M2XP-9AW --out amira --reason "her access request"
    """


@subject.command("export")
@click.argument("pseudonym")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Writes OUT.json and OUT.txt (mode 0600, never overwritten); with --to, the sealed file OUT.")
@click.option("--to", "recipient", help="Seal it to this public identity (dvault1...), signed by yours.")
@click.option("--yes", is_flag=True, help="With --to: do not ask whether the recipient's fingerprint is right.")
@vault_options
@reason_option
def subject_export(pseudonym: str, out: Path, recipient: str | None, yes: bool, **kw: Any) -> None:
    """Write everything the vault holds about one participant: every field, their
    pseudonyms, their retention, and who (by role) accessed their record when. Lead only.

    Example: dvault subject export BA-7KQ4-M2XP-9AW --out amira-data --reason "access request"
    """
    from vault.identity import PublicIdentity

    from vault import exporter as X
    from vault import subject as SJ

    from .data import confirm_recipient
    from .travel import remember_written

    to = PublicIdentity.from_line(recipient) if recipient else None
    targets = [out] if to is not None else [out.with_name(out.name + ".json"), out.with_name(out.name + ".txt")]
    for p in targets:  # before anything is decrypted or audited
        if p.exists() or p.is_symlink():
            raise vault.VaultExists(f"refusing to overwrite {p}")
    v, me = open_vault_as(kw.pop("vault_url"), kw.pop("identity"), kw.pop("passphrase_file"), kw.pop("recovery"))
    with v:
        if to is not None:
            confirm_recipient(v, me, to, yes)
        set_reason(v, kw["reason"])
        got = v.subject_export(pseudonym)
        vault_id = v.id
    seal = None
    if to is not None:
        assert me is not None
        sealed_to, sender = to, me

        def seal(data: bytes, fields: list[str]) -> bytes:
            return X.seal(data, sealed_to, sender, vault_id=vault_id, purpose=None, fields=fields, fmt="json", rows=1)
    written = SJ.write(got, out, seal_with=seal)
    for p in written:
        remember_written(p, "export")
    note(f"wrote {', '.join(map(str, written))}{' (signed, sealed)' if to else ''}")


@subject.command("erase")
@click.argument("pseudonym")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@vault_options
@reason_option
def subject_erase(pseudonym: str, yes: bool, **kw: Any) -> None:
    """Crypto-shred one participant's record at their request (cannot be undone). Lead only.

    Example: dvault subject erase BA-7KQ4-M2XP-9AW --reason "erasure request"
    """
    with unlock(kw) as v:
        set_reason(v, kw["reason"])
        v.resolve(pseudonym, [])  # a pseudonym that names no one fails before the question
        if not yes:
            confirm("Shred this participant's record for good?")
        v.subject_erase(pseudonym)
    note("erased")


COMMANDS = [purge, retain, subject]
