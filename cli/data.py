"""Import and export: the two places where plaintext crosses the vault's boundary."""

from __future__ import annotations

import os

import sys
from pathlib import Path
from typing import Any

import click

import vault
from vault import exporter as X
from vault.identity import Identity, PublicIdentity

from .common import note, printable, reason_option, set_reason, unlock, vault_options, with_progress
from .secrets_input import IDENTITY_ENV, read_passphrase


@click.command(name="import")
@click.argument("csv_file", metavar="FILE", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--mapping", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="TOML mapping of columns to schema fields (docs/mapping.md).")
@click.option("--preset", type=click.Choice(["kobo", "kobo-labels", "civicrm"]),
              help="A shipped mapping: KoboToolbox (any header setting) or CiviCRM.")
@click.option("--encoding", help="Text encoding of a CSV (default UTF-8; e.g. cp1252 for Excel on Windows).")
@click.option("--date-format", "date_formats", multiple=True, metavar="FMT",
              help="Accept dates in this strptime format too, e.g. %d/%m/%Y (repeatable; replaces the mapping's).")
@click.option("--dry-run", is_flag=True, help="Check every row and report; change nothing.")
@click.option("--skip-bad", is_flag=True, help="Import the good rows even if some are bad.")
@click.option("--update", "apply_updates", is_flag=True,
              help="Also apply the changes of rows whose source id names a stored record.")
@click.option("--include-unapproved", is_flag=True, help="Import rows the source marks as not approved too.")
@click.option("--json", "as_json", is_flag=True, help="A JSON report on stdout: one entry per row, no values.")
@vault_options
@reason_option
def import_(csv_file: Path, mapping: Path | None, preset: str | None, encoding: str | None,
            date_formats: tuple[str, ...], dry_run: bool, skip_bad: bool, apply_updates: bool,
            include_unapproved: bool, as_json: bool, **kw: Any) -> None:
    """Import a registration export: CSV (any encoding, ';' or ',') or XLSX, with a mapping
    or a shipped preset (KoboToolbox, CiviCRM).

    Every bad row is reported with its line number, and every column nothing uses is
    named; nothing is imported until all rows are fixed or --skip-bad is given. Then all
    good rows go in one transaction. A row whose person is already in the vault (same
    e-mail, passport number, or name and birth date) is refused; a row whose source id
    (Kobo _uuid, CiviCRM contact id) names a stored record is compared with it: --dry-run
    lists the fields that would change, --update applies them (audited as updates).

    Example: dvault import kobo.xlsx --preset kobo --dry-run
    """
    from . import import_report as R

    data = csv_file.read_bytes()
    with unlock(kw) as v:
        set_reason(v, kw["reason"])
        v.require_writable("import")  # a refusal before any report on the file
        m, notes = R.choose_mapping(data, mapping, preset, encoding, date_formats, v.schema)
        plan = R.plan(v, data, m, encoding, include_unapproved)
        report = R.Report(csv_file.name, plan, dry_run=dry_run, apply_updates=apply_updates,
                          skip_bad=skip_bad, notes=notes)
        if dry_run or (plan.errors and not skip_bad) or report.nothing_to_do():
            report.finish(as_json)
            return
        ids = with_progress("importing", len(plan.rows),
                            lambda step: v.import_rows([values for _line, values in plan.rows], progress=step)
                            ) if plan.rows else []
        updated = R.apply_updates(v, plan) if apply_updates else []
        report.done(ids, updated)
        report.finish(as_json)


@click.command()
@click.option("--fields", required=True, help="Comma-separated fields (only classes your role holds).")
@click.option("--purpose", help="Add this purpose's pseudonym to each row (badge, travel, ...).")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to this new file (mode 0600, never overwritten) instead of stdout.")
@click.option("--to", "recipient", help="Seal the export to this public identity (dvault1...).")
@vault_options
@reason_option
def export(fields: str, purpose: str | None, fmt: str, out: Path | None, recipient: str | None, **kw: Any) -> None:
    """Export some fields of every participant, for a badge printer or a travel agent.

    Example: dvault export --fields badge_name,pronouns --purpose badge --out badges.csv
    """
    from .common import fields_arg

    names = fields_arg(fields)
    assert names is not None
    to = PublicIdentity.from_line(recipient) if recipient else None
    if out is not None and (out.exists() or out.is_symlink()):  # write_private refuses it too, but late:
        raise vault.VaultExists(f"refusing to overwrite {out}")  # after decrypting and auditing everything
    if out is not None and not os.access(out.parent, os.W_OK | os.X_OK):
        raise click.UsageError(f"cannot write to {out}: no such folder, or not writable")  # same: before the work
    with unlock(kw) as v:
        set_reason(v, kw["reason"])
        rows = with_progress("exporting", v.count(), lambda step: v.export(names, purpose=purpose, progress=step))
    columns = (["pseudonym"] if purpose else []) + names
    data = (X.to_csv(rows, columns) if fmt == "csv" else X.to_json(rows)).encode("utf-8")
    if to is not None:
        data = X.seal(data, to)
    if out is not None:
        X.write_private(out, data)
        note(f"wrote {len(rows)} row(s) to {out}{' (sealed)' if to else ''}")
    else:
        _to_stdout(data, sealed=to is not None)


@click.command(name="open-export")
@click.argument("sealed_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--identity", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="New file (0600) instead of stdout.")
@click.option("--passphrase-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Identity passphrase from this file (else DVAULT_IDENTITY_PASSPHRASE or "
                   "DVAULT_PASSPHRASE, else a prompt).")
def open_export(sealed_file: Path, identity: Path, out: Path | None, passphrase_file: Path | None) -> None:
    """Open an export that was sealed to your identity.

    Example: dvault open-export badges.sealed --identity ~/me.dvid --out badges.csv
    """
    ident = Identity.load(identity, read_passphrase(passphrase_file, "Identity passphrase", env=IDENTITY_ENV))
    data = X.open_sealed(sealed_file.read_bytes(), ident)
    if out is not None:
        X.write_private(out, data)
    else:
        _to_stdout(data, sealed=False)


def _to_stdout(data: bytes, *, sealed: bool) -> None:
    """Exported data on stdout. On a terminal, the characters a screen would act on
    (escapes, C1, bidi overrides) are shown escaped, as list and show do: a pipe or a file
    gets the exact bytes."""
    if not sealed and sys.stdout.isatty():
        text = data.decode("utf-8", "replace")
        data = printable(text, lines=True).encode("utf-8")
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


@click.command(name="sample-csv")
@click.option("--rows", type=click.IntRange(1, 100_000), default=150, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="New file (0600) for the synthetic Kobo-style export.")
def sample_csv(rows: int, out: Path) -> None:
    """Write a synthetic KoboToolbox-style registration export (invented people) for
    trying import, e.g. with docs/kobo-mapping.toml.

    Example: dvault sample-csv --rows 150 --out registrations.csv
    """
    import csv
    import io

    from .synth import participants

    header = ["personal/full_name", "personal/badge_name", "personal/pronouns", "personal/date_of_birth",
              "personal/nationality", "personal/residence", "personal/passport_no", "contact/email",
              "contact/phone", "contact/signal", "contact/emergency_contact", "work/organisation", "work/field",
              "travel/arrival", "travel/departure", "travel/hotel_needed", "needs/dietary", "needs/accessibility",
              "consent/photo", "_id"]
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=";", lineterminator="\r\n")
    w.writerow(header)
    for i, p in enumerate(participants(rows)):
        w.writerow([p["legal_name"], p["badge_name"], p["pronouns"], p["date_of_birth"].isoformat(),
                    p["nationality"], p["country_of_residence"], p["passport_number"], p["email"], p["phone"],
                    "no", "Next of kin, +41 00 000 0000", p["organisation"], p["field_of_work"],
                    p["arrival"].isoformat(), p["departure"].isoformat(), "yes", " ".join(p["dietary"]), "",
                    "yes" if p["photo_consent"] else "no", str(410000000 + i)])
    X.write_private(out, ("\ufeff" + buf.getvalue()).encode("utf-8"))
    note(f"wrote {rows} synthetic registrations to {out}")


COMMANDS = [import_, export, open_export, sample_csv]
