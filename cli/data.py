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
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--mapping", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="TOML mapping of CSV columns to schema fields.")
@click.option("--dry-run", is_flag=True, help="Check every row and report; import nothing.")
@click.option("--skip-bad", is_flag=True, help="Import the good rows even if some are bad.")
@vault_options
@reason_option
def import_(csv_file: Path, mapping: Path, dry_run: bool, skip_bad: bool, **kw: Any) -> None:
    """Import a registration form export (KoboToolbox, CiviCRM...: UTF-8, ';' or ',').

    Every bad row is reported with its line number; nothing is imported until all are
    fixed or --skip-bad is given. Then all good rows go in one transaction. A row whose
    person is already in the vault (same e-mail, passport number, or name and birth date)
    is a bad row: re-importing a fresh download with --skip-bad adds only the new people.

    Example: dvault import kobo.csv --mapping kobo.toml --dry-run
    """
    from vault.importer import MappingError, check_against_vault, load_mapping, plan_import

    try:
        mapping_text = mapping.read_text("utf-8")
    except UnicodeDecodeError:
        raise MappingError("mapping file is not UTF-8 text") from None
    with unlock(kw) as v:
        set_reason(v, kw["reason"])
        v.require_writable("import")  # a refusal before any report on the file
        plan = plan_import(csv_file.read_bytes(), load_mapping(mapping_text, v.schema), v.schema)
        plan, unchecked = check_against_vault(v, plan)  # a fresh download again must not duplicate anyone
        for what in unchecked:
            note(f"not checked against the vault ({what}): your role cannot read those fields")
        for err in plan.errors:
            click.echo(f"dvault: {csv_file.name}: {err}", err=True)
        note(f"{len(plan.rows)} good row(s), {len(plan.errors)} problem(s)")
        if dry_run:
            if plan.errors:
                sys.exit(1)
            return
        if plan.errors and not skip_bad:
            raise click.UsageError("nothing imported: fix the rows above or use --skip-bad")
        if not plan.rows:
            raise click.UsageError("no rows to import")
        ids = with_progress("importing", len(plan.rows),
                        lambda step: v.import_rows([values for _line, values in plan.rows], progress=step))
        click.echo(f"imported {len(ids)} participant(s)")


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
